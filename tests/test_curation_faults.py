"""Curation faults that delete real data or keep leaks, each kind with its right values (issue 14).

Kinds: normalisation that drops meaning (4), boilerplate pairs that differ in substance (5),
chained clusters (6), oversized LSH buckets (7), Unicode and scripts without spaces (8),
decontamination naming and scope (9), invalid conversations (10), wrong input types and
benchmark paths (13).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.curation import CurationConfig, FilterConfig, check_benchmarks, curate
from steps.curation.ngrams import ngrams, words
from steps.curation.run import REMOVED_FILE, STATS_FILE
from steps.errors import UserError
from steps.repo_folder import config_file, write_config
from steps.rows import stable_id, to_table

PLAIN = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                       token_sample=0)
RNG = np.random.default_rng(14)
VOCAB = [f"w{i}" for i in range(5000)]


def prose(k: int) -> str:
    return " ".join(RNG.choice(VOCAB, k))


def our_jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard of our own shingle sets (the similarity curation states)."""
    tokens = words(pa.array([a, b]))
    grams, offsets = ngrams(tokens, n, short_as_one=True)
    sa, sb = set(grams[offsets[0]:offsets[1]] >> 32), set(grams[offsets[1]:offsets[2]] >> 32)
    return len(sa & sb) / len(sa | sb)


def run_plain(tmp_path: Path, texts: list[str], config: CurationConfig = PLAIN) -> pl.DataFrame:
    pq.write_table(pa.table({"text": texts, "id": [f"r{i:04d}" for i in range(len(texts))]}),
                   tmp_path / "in.parquet")
    curate(str(tmp_path / "in.parquet"), tmp_path / "out", config, progress=False)
    return pl.read_parquet(tmp_path / "out" / REMOVED_FILE)


# ---------------------------------------------------------------- (4) normalisation keeps meaning
DIFFERENT = [
    ("Solve x^2 + 5x + 6 = 0. Answer: x = -2 or x = -3.",
     "Solve x^2 - 5x + 6 = 0. Answer: x = 2 or x = 3."),
    ("Who created C++?", "Who created C#?"),
    ("Simplify 84 * 1.", "Simplify 84 / 1."),
    ("Is 3 < 5?", "Is 3 > 5?"),
    ("Compute (a + b) * c", "Compute a + b * c"),
    ("The answer is 0,1", "The answer is 0.1"),
    ("Price: $5", "Price: €5"),
    ("if (x != y) return", "if (x == y) return"),
    ("Take 50% of it", "Take 50 of it"),
    ("The result is .5", "The result is 5"),
    ("x = 5 − 3", "x = 5 3"),
]
SAME = [
    ("Hello,  World! It's me.", "hello world it s me"),
    ("café au lait", unicodedata.normalize("NFD", "café au lait")),
    ("ＡＢＣ１２３！", "abc123!"),
    ("Straße", "STRASSE"),
    ("x = 5 − 3", "x = 5 - 3"),
    ("contami-\n  nation", "contamination"),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_normalisation_keeps_symbols_signs_and_numbers(a: str, b: str) -> None:
    keys = words(pa.array([a, b])).text_keys
    assert keys[0] != keys[1]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_normalisation_folds_case_spacing_unicode_and_width(a: str, b: str) -> None:
    keys = words(pa.array([a, b])).text_keys
    assert keys[0] == keys[1]


def test_distinct_tasks_are_not_exact_duplicates(tmp_path: Path) -> None:
    gone = run_plain(tmp_path, [t for pair in DIFFERENT for t in pair])
    assert gone.height == 0


# ---------------------------------------------------------------- (5) boilerplate + real difference
TEMPLATE = ("You are reviewing a pull request for a small utility library. Read the function "
            "below carefully and write a short review that says whether it is correct, whether "
            "its name matches what it does, whether the tests cover the edge cases, whether the "
            "documentation explains the arguments and the return value, and whether anything "
            "should change before it is merged into the main branch of the repository. Keep the "
            "review polite, concrete and under one hundred words, and end it with a verdict.\n")
PASSAGE = ("The river that crosses the old town was once the main road for merchants who carried "
           "salt, wool and timber from the mountains to the coast. Over three centuries the town "
           "grew along both banks, and the bridges that joined them became markets, meeting "
           "places and, in times of war, lines of defence. When the railway arrived the river "
           "lost its trade, the warehouses emptied and many families moved away, but the "
           "bridges stayed, and today they are the first thing visitors photograph. ")
HARD_NEGATIVES = [  # (kind, a, b): long shared text, different task
    ("operator", TEMPLATE + "def add(a, b):\n    return a + b",
     TEMPLATE + "def add(a, b):\n    return a - b"),
    ("repeated operator", TEMPLATE + "def div(a, b):\n    return a / b",
     TEMPLATE + "def div(a, b):\n    return a // b"),
    ("identifier", TEMPLATE + "def add(a, b):\n    return a + b",
     TEMPLATE + "def plus(a, b):\n    return a + b"),
    ("code body", TEMPLATE + "def area(r):\n    return 3.14159 * r * r",
     TEMPLATE + "def area(r):\n    return math.pi * r ** 2"),
    ("number", PASSAGE + "In which century did the railway reach the town if it came 300 years "
     "after the first bridge?", PASSAGE + "In which century did the railway reach the town if "
     "it came 200 years after the first bridge?"),
    ("negation", PASSAGE + "The bridges were the main reason the town grew along both banks.",
     PASSAGE + "The bridges were not the main reason the town grew along both banks."),
    ("question", PASSAGE + "\nQuestion: What did merchants carry on the river?",
     PASSAGE + "\nQuestion: Why did families move away?"),
    ("question", PASSAGE + "\nQuestion: Who wrote it?", PASSAGE + "\nQuestion: When was it built?"),
]


@pytest.mark.parametrize(("kind", "a", "b"), HARD_NEGATIVES, ids=[k for k, _, _ in HARD_NEGATIVES])
def test_shared_boilerplate_with_a_real_difference_keeps_both(tmp_path: Path, kind: str, a: str,
                                                              b: str) -> None:
    assert our_jaccard(a, b) >= 0.8, "a hard negative must pass the Jaccard threshold"
    assert run_plain(tmp_path, [a, b]).height == 0


def test_same_passage_different_questions_keeps_every_task(tmp_path: Path) -> None:
    """AgentInstruct asks several questions about one passage: none is a duplicate, whatever the
    text compared (user turns only, or the conversation with short answers)."""
    questions = ["What did merchants carry on the river?", "Why did families move away?",
                 "What do visitors photograph first?"]
    rows = [{"id": stable_id("q", i), "skill": "rc",
             "messages": [{"role": "user", "content": PASSAGE + "\n\n" + q},
                          {"role": "assistant", "content": "See the passage."}]}
            for i, q in enumerate(questions)]
    write_config(tmp_path / "repo", "rc", to_table(rows))
    for dedup_on in ("user", "conversation"):
        config = CurationConfig(dedup_on=dedup_on, token_sample=0)
        curate(tmp_path / "repo", tmp_path / dedup_on, config, progress=False)
        assert pl.read_parquet(tmp_path / dedup_on / REMOVED_FILE).height == 0, dedup_on


TRUE_NEAR_DUPLICATES = [  # benign edits of one text: one row must go
    ("typo", PASSAGE + "Which goods came from the mountains?",
     PASSAGE.replace("merchants", "merchnats") + "Which goods came from the mountains?"),
    ("filler word", PASSAGE + "Which goods came from the mountains?",
     PASSAGE.replace("many families", "many of the families") + "Which goods came from the mountains?"),
    ("moved sentence", PASSAGE + "Which goods came from the mountains?",
     "Which goods came from the mountains? " + PASSAGE),
]


@pytest.mark.parametrize(("kind", "a", "b"), TRUE_NEAR_DUPLICATES,
                         ids=[k for k, _, _ in TRUE_NEAR_DUPLICATES])
def test_benign_edits_still_merge(tmp_path: Path, kind: str, a: str, b: str) -> None:
    gone = run_plain(tmp_path, [a, b])
    assert gone.select("id", "stage", "duplicate_of").rows() == [("r0001", "near_dup", "r0000")]
    assert gone["similarity"].item() == pytest.approx(our_jaccard(a, b), abs=1e-6)


# ---------------------------------------------------------------- (6) no chains
def edit(text: str, positions: list[int]) -> str:
    tokens = text.split()
    for p in positions:
        tokens[p] = "changed" + str(p).translate(str.maketrans("0123456789", "abcdefghij"))
    return " ".join(tokens)


def test_removed_rows_are_near_duplicates_of_the_row_they_name(tmp_path: Path) -> None:
    base = prose(200)
    middle = edit(base, [20, 60, 100])
    far = edit(middle, [140, 170, 190])
    texts = [base, middle, far]
    assert our_jaccard(base, middle) >= 0.8 and our_jaccard(middle, far) >= 0.8
    assert our_jaccard(base, far) < 0.8
    gone = run_plain(tmp_path, texts)
    # r0000 is kept, r0001 is its near-duplicate; r0002 is a near-duplicate only of the removed
    # r0001, so it is kept (a chain would have removed it as a duplicate of r0000).
    assert gone.select("id", "duplicate_of").rows() == [("r0001", "r0000")]
    assert gone["similarity"].item() == pytest.approx(our_jaccard(base, middle), abs=1e-6)


def test_similarity_is_to_the_named_row_for_every_removal(tmp_path: Path) -> None:
    texts = []
    for _ in range(40):
        base = prose(100)
        texts += [base, edit(base, [20]), edit(base, [20, 60]), edit(base, [5, 45, 85])]
    texts += texts[1:8]  # exact copies of rows that near-dup removes
    gone = run_plain(tmp_path, texts)
    index = {f"r{i:04d}": t for i, t in enumerate(texts)}
    assert gone.height >= 80 and set(gone["stage"]) == {"near_dup", "exact_dedup"}
    for row_id, named, similarity in gone.select("id", "duplicate_of", "similarity").rows():
        jaccard = our_jaccard(index[row_id], index[named])
        assert jaccard >= 0.8 and similarity == pytest.approx(jaccard, abs=1e-6), row_id


# ---------------------------------------------------------------- (7) big buckets
def test_six_hundred_twin_pairs_on_one_template_give_six_hundred_merges(tmp_path: Path) -> None:
    template = prose(150)
    texts = []
    for _ in range(600):
        own = prose(30).split()
        twin = own.copy()
        twin[15] = "twinedit"
        texts += [template + ". " + " ".join(own), template + ". " + " ".join(twin)]
    assert min(our_jaccard(texts[i], texts[i + 1]) for i in range(0, 40, 2)) >= 0.855
    gone = run_plain(tmp_path, texts)
    assert gone.height == 600
    assert all(int(a[1:]) // 2 == int(b[1:]) // 2 for a, b in gone.select("id", "duplicate_of").rows())


# ---------------------------------------------------------------- (8) scripts without spaces
CHINESE = ("长江是中国最长的河流，发源于青藏高原，流经十一个省级行政区，最后注入东海。它全长约六千三百公里，"
           "流域面积约一百八十万平方公里，是世界第三长河。长江流域气候温和，雨量充沛，物产丰富，自古以来就是"
           "中国经济最发达的地区之一。")
JAPANESE = ("富士山は静岡県と山梨県にまたがる活火山で、標高は三千七百七十六メートルです。"
            "日本で最も高い山として知られ、古くから信仰の対象となってきました。夏の登山シーズンには多くの人が山頂を目指し、"
            "ご来光を見るために夜から登り始める人もたくさんいます。")


@pytest.mark.parametrize("text", [CHINESE, JAPANESE], ids=["zh", "ja"])
def test_one_changed_character_in_a_cjk_text_is_a_near_duplicate(tmp_path: Path, text: str) -> None:
    changed = text[:40] + "海" + text[41:]
    assert our_jaccard(text, changed) >= 0.85
    gone = run_plain(tmp_path, [text, changed, text[:60] + "不" + text[60:]])  # 不: a negation
    assert gone.select("id", "duplicate_of").rows() == [("r0001", "r0000")]


# ---------------------------------------------------------------- (9) decontamination
ITEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        "in May. How many clips did Natalia sell altogether in April and May?")
RENUMBERED = ITEM.replace("48", "24")
OTHER = ("Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of "
         "babysitting. How much did she earn?")


def decontaminate(tmp_path: Path, rows: list[list[dict]]) -> tuple[pl.DataFrame, dict]:
    bench = tmp_path / "gsm.jsonl"
    bench.write_text("".join(json.dumps({"question": q}) + "\n" for q in (RENUMBERED, ITEM, OTHER)))
    table = to_table([{"id": stable_id("d", i), "skill": "s", "messages": m}
                      for i, m in enumerate(rows)])
    write_config(tmp_path / "repo", "c", table)
    config = CurationConfig(benchmarks=[str(bench)], token_sample=0)
    curate(tmp_path / "repo", tmp_path / "out", config, progress=False)
    report = json.loads((tmp_path / "out" / STATS_FILE).read_text())["decontamination"]["gsm"]
    return pl.read_parquet(tmp_path / "out" / REMOVED_FILE), report


def chat(user: str, assistant: str = "Here is a careful answer to the question above.") -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def test_the_best_covering_item_is_named_with_its_own_similarity(tmp_path: Path) -> None:
    gone, report = decontaminate(tmp_path, [chat("Please solve this. " + ITEM)])
    assert gone.select("benchmark", "benchmark_item", "similarity").rows() == [("gsm", 1, 1.0)]
    assert report["items_hit"] == 1 and report["rows_flagged"] == 1


LEAKS = [
    ("assistant turn", chat("Give me a word problem about clips.", "Sure: " + OTHER)),
    ("line wrap", chat(OTHER.replace("babysitting", "baby-\nsitting").replace("Yesterday", "Yester-\n day"))),
    ("numbers changed first", chat(OTHER.replace("12", "15"))),
    ("numbers changed last", chat(OTHER.replace("50", "40"))),
    ("full width", chat(unicodedata.normalize("NFKC", OTHER).replace("12", "１２"))),
]


@pytest.mark.parametrize(("kind", "messages"), LEAKS, ids=[k for k, _ in LEAKS])
def test_leaks_are_caught_wherever_they_sit(tmp_path: Path, kind: str, messages: list[dict]) -> None:
    gone, _ = decontaminate(tmp_path, [messages])
    assert gone.select("stage", "benchmark_item").rows() == [("decontamination", 2)]


# ---------------------------------------------------------------- (10) invalid conversations
def turn(role: str, content: str = "A perfectly ordinary sentence with several words.") -> dict:
    return {"role": role, "content": content}


INVALID = [
    ("role_order", [turn("user"), turn("user"), turn("assistant")]),
    ("role_order", [turn("assistant"), turn("user"), turn("assistant")]),
    ("role_order", [turn("user"), turn("assistant"), turn("assistant")]),
    ("role_order", [turn("user"), turn("system"), turn("assistant")]),
    ("role_order", [turn("user")]),
    ("empty_turn", [turn("user", ", "), turn("assistant")]),
    ("empty_turn", [turn("user"), turn("assistant", "   \n ")]),
    ("empty_turn", [turn("user"), turn("assistant", "")]),
    ("empty_turn", [turn("system", "..."), turn("user"), turn("assistant")]),
    ("invalid_messages", []),
]
VALID = [
    [turn("user"), turn("assistant")],
    [turn("system"), turn("user"), turn("assistant"), turn("user", "And 2 + 2?"), turn("assistant", "4")],
]


def test_invalid_conversations_are_removed_with_a_counted_reason(tmp_path: Path) -> None:
    rows = [{"id": stable_id("v", i), "skill": "s", "messages": m}
            for i, m in enumerate([m for _, m in INVALID] + VALID)]
    write_config(tmp_path / "repo", "c", to_table(rows))
    funnel = pl.from_arrow(curate(tmp_path / "repo", tmp_path / "out",
                                  CurationConfig(token_sample=0, exact_dedup=False, near_dup=False,
                                                 filters=FilterConfig(min_words=0)),
                                  progress=False))
    gone = pl.read_parquet(tmp_path / "out" / REMOVED_FILE).sort("row")
    assert gone.select("row", "reason").rows() == [(i, r) for i, (r, _) in enumerate(INVALID)]
    counts = dict(funnel.filter(pl.col("stage") == "filter").select("reason", "rows").rows())
    assert counts == {"role_order": 5, "empty_turn": 4, "invalid_messages": 1}
    assert funnel.filter(pl.col("stage") == "output")["rows"].item() == len(VALID)


# ---------------------------------------------------------------- (13) input types, benchmark paths
@pytest.mark.parametrize("messages", [["a string"], [42], [["not", "structs"]]],
                         ids=["string", "integer", "list of strings"])
def test_wrong_messages_type_is_one_line(tmp_path: Path, messages: list) -> None:
    pq.write_table(pa.table({"messages": messages}), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match=r"column `messages` is .*it must be a list of \{role, content\}"):
        curate(str(tmp_path / "bad.parquet"), tmp_path / "out", progress=False)


def test_wrong_text_column_type_is_one_line(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": [[1, 2]]}), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="--text-column 'text' is .*must be a string column"):
        curate(str(tmp_path / "bad.parquet"), tmp_path / "out", PLAIN, progress=False)


@pytest.mark.parametrize("spec", ["evals/missing.jsonl", "./gsm8k", "data/evals/gsm8k",
                                  "name=evals/missing.parquet", "/abs/path/x.json"])
def test_missing_benchmark_paths_are_not_hub_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 spec: str) -> None:
    import datasets

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a local path must never reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no such file or folder"):
        check_benchmarks([spec])
    pq.write_table(pa.table({"text": ["some words here"]}), tmp_path / "in.parquet")
    with pytest.raises(UserError, match="no such file or folder"):  # before any work
        curate("in.parquet", tmp_path / "out", PLAIN.model_copy(update={"benchmarks": [spec]}),
               progress=False)
    assert not (tmp_path / "out").exists()


def test_hub_ids_and_local_files_pass_the_check(tmp_path: Path) -> None:
    (tmp_path / "gsm.jsonl").write_text('{"question": "q"}\n')
    check_benchmarks(["openai/gsm8k", "cais/mmlu:all", f"gsm={tmp_path / 'gsm.jsonl'}", str(tmp_path)])


def test_kept_rows_are_written_unchanged(tmp_path: Path) -> None:
    texts = [t for pair in DIFFERENT for t in pair]
    run_plain(tmp_path, texts)
    assert pq.read_table(config_file(tmp_path / "out", "default")).column("text").to_pylist() == texts
