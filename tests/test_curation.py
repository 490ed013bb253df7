"""Curation: near-dup accuracy on a planted corpus, the keep rule, exact dedup, the funnel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.curation import CurationConfig, FilterConfig, curate
from steps.curation.ngrams import ngrams, words
from steps.curation.run import REMOVED_FILE, STATS_FILE
from steps.repo_folder import config_file, read_config, write_config
from steps.rows import FUNNEL_SCHEMA, stable_id, to_table

SHINGLE = 5
PLAIN = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                       token_sample=0)


def shingles(text: str) -> set[tuple[str, ...]]:
    w = text.split()
    return {tuple(w[i:i + SHINGLE]) for i in range(len(w) - SHINGLE + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def planted_corpus(docs: int = 400, seed: int = 0) -> tuple[list[str], list[tuple[int, int, float]]]:
    """Random 200-word texts; a fifth of them are variants of others at Jaccard ~0.5 to 0.95."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)])
    texts = [" ".join(rng.choice(vocab, 200)) for _ in range(docs)]
    pairs = []
    sources = rng.permutation(docs)
    for i, (source, target) in enumerate(zip(sources[: docs // 5], sources[docs // 5: 2 * docs // 5],
                                             strict=True)):
        level = (0.5, 0.7, 0.85, 0.9, 0.95)[i % 5]
        words_ = texts[source].split()
        m = max(1, round(196 * (1 - level) / (SHINGLE * (1 + level))))
        for slot in rng.choice(len(words_) // SHINGLE, m, replace=False) * SHINGLE:
            words_[slot] = str(rng.choice(vocab))
        texts[target] = " ".join(words_)
        pairs.append((int(source), int(target), jaccard(texts[source], texts[target])))
    return texts, pairs


def write_texts(path: Path, texts: list[str], ids: list[str] | None = None) -> Path:
    columns = {"text": texts} | ({"id": ids} if ids is not None else {})
    pq.write_table(pa.table(columns), path)
    return path


def removed(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / REMOVED_FILE)


def test_near_dup_precision_and_recall_on_planted_pairs(tmp_path: Path) -> None:
    texts, pairs = planted_corpus()
    source = write_texts(tmp_path / "corpus.parquet", texts)
    curate(str(source), tmp_path / "out", PLAIN, progress=False)
    gone = removed(tmp_path / "out").filter(pl.col("stage") == "near_dup")
    found = {tuple(sorted((int(r), int(d.split(":")[1]))))
             for r, d in zip(gone["row"], gone["duplicate_of"], strict=True)}
    positives = {tuple(sorted((a, b))) for a, b, j in pairs if j >= 0.8}
    assert positives, "the corpus must plant pairs above the threshold"
    recall = len(found & positives) / len(positives)
    precision = sum(jaccard(texts[a], texts[b]) >= 0.8 for a, b in found) / len(found)
    assert recall >= 0.99 and precision >= 0.99, (recall, precision)
    below = {tuple(sorted((a, b))) for a, b, j in pairs if j < 0.75}
    assert not found & below


def test_kept_row_is_the_same_across_runs_and_input_orders(tmp_path: Path) -> None:
    texts, _ = planted_corpus(200, seed=1)
    texts += texts[:10]  # exact duplicates too
    ids = [stable_id("doc", i) for i in range(len(texts))]
    order = np.random.default_rng(7).permutation(len(texts))
    outcomes = []
    for run, perm in enumerate([np.arange(len(texts)), np.arange(len(texts)), order]):
        source = write_texts(tmp_path / f"in{run}.parquet", [texts[i] for i in perm],
                             [ids[i] for i in perm])
        curate(str(source), tmp_path / f"out{run}", PLAIN, progress=False)
        gone = removed(tmp_path / f"out{run}")
        outcomes.append(dict(zip(gone["id"], gone["duplicate_of"], strict=True)))
        kept = pq.read_table(config_file(tmp_path / f"out{run}", "default")).column("id")
        assert set(kept.to_pylist()).isdisjoint(outcomes[-1])
    assert len(outcomes[0]) >= 10 + 20  # the exact copies and the near-dups above 0.8
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_kept_row_is_the_smallest_id_of_its_cluster(tmp_path: Path) -> None:
    base = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
    texts = [base, base.upper() + " !!", base.replace("pi", "rho"), "completely different words here"]
    source = write_texts(tmp_path / "in.parquet", texts, ["c", "b", "a", "d"])
    curate(str(source), tmp_path / "out", PLAIN.model_copy(update={"jaccard": 0.5}),
           progress=False)
    gone = removed(tmp_path / "out").sort("id")
    assert gone["id"].to_list() == ["b", "c"]
    # "c" is an exact copy of "b" (smaller id), and "b" a near-dup of "a": both point at "a".
    assert gone["stage"].to_list() == ["near_dup", "exact_dedup"]
    assert gone["duplicate_of"].to_list() == ["a", "a"]


def test_exact_dedup_ignores_case_punctuation_and_spacing() -> None:
    tokens = words(pa.array(["Hello,  World! It's me.", "hello world it s me", "hello world"]))
    assert tokens.text_keys[0] == tokens.text_keys[1] != tokens.text_keys[2]
    assert tokens.counts.tolist() == [5, 5, 2]


def test_unicode_is_case_folded_and_punctuation_separates() -> None:
    tokens = words(pa.array(["ÉCOLE “quoted” — naïve", "école quoted naïve"]))
    assert tokens.text_keys[0] == tokens.text_keys[1]


def test_short_texts_get_one_shingle_for_near_dup_but_no_ngram_for_decontamination() -> None:
    tokens = words(pa.array(["one two three", ""]))
    grams, offsets = ngrams(tokens, 5, short_as_one=True)
    assert np.diff(offsets).tolist() == [1, 0]
    assert np.diff(ngrams(tokens, 8, short_as_one=False)[1]).tolist() == [0, 0]


def chat_row(i: int, user: str, assistant: str, skill: str = "s") -> dict:
    return {"id": stable_id("row", i), "skill": skill, "config": skill,
            "messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def chat_folder(path: Path) -> Path:
    rng = np.random.default_rng(3)
    vocab = [f"v{i}" for i in range(2000)]

    def text(k: int) -> str:
        return " ".join(rng.choice(vocab, k))

    rows = [chat_row(i, text(30), text(60), skill=("a", "b")[i % 2]) for i in range(60)]
    rows.append({**rows[0], "id": stable_id("copy")})  # exact duplicate
    rows.append(chat_row(100, text(10), "I'm sorry, but I can't help with that.", "a"))
    rows.append(chat_row(101, "hi", "ok", "b"))  # too short
    rows.append({"id": stable_id("broken"), "skill": "a",
                 "messages": [{"role": "user", "content": text(20)}]})  # no assistant turn
    table = to_table(rows)
    write_config(path, "a", table.filter(pa.compute.equal(table["skill"], "a")))
    write_config(path, "b", table.filter(pa.compute.equal(table["skill"], "b")))
    write_config(path, "failures", pa.table({"reason": ["timeout"]}))
    pq.write_table(to_table([{"config": "a", "stage": "generation", "reason": "timeout",
                              "rows": 1}], FUNNEL_SCHEMA), path / "funnel.parquet")
    return path


def test_funnel_counts_add_up_to_rows_in(tmp_path: Path) -> None:
    repo = chat_folder(tmp_path / "repo")
    rows_in = {c: read_config(repo, c).num_rows for c in ("a", "b")}
    funnel = pl.from_arrow(curate(repo, repo, CurationConfig(token_sample=2), progress=False))
    for config in ("a", "b"):
        mine = funnel.filter(pl.col("config") == config)
        total = mine.filter(pl.col("stage") == "input")["rows"].item()
        out = mine.filter(pl.col("stage") == "output")["rows"].item()
        removals = mine.filter(~pl.col("stage").is_in(["input", "output", "generation"]))
        assert total == rows_in[config]
        assert total - removals["rows"].sum() == out == read_config(repo, config).num_rows
    reasons = set(zip(funnel["stage"], funnel["reason"], strict=True))
    assert {("filter", "refusal"), ("filter", "too_short"), ("filter", "role_order"),
            ("exact_dedup", "exact_duplicate"), ("generation", "timeout")} <= reasons
    assert read_config(repo, "failures").num_rows == 1  # configs without messages stay as they are
    stats = json.loads((repo / STATS_FILE).read_text())
    assert stats["configs"]["a"]["rows"] == read_config(repo, "a").num_rows
    assert stats["configs"]["a"]["skills"] == {"a": stats["configs"]["a"]["rows"]}
    assert stats["configs"]["a"]["tokens"]["sampled_rows"] == 2
    assert stats["configs"]["a"]["words"]["mean"] == pytest.approx(90, abs=1)


def test_per_skill_filters_apply_to_their_skill_only(tmp_path: Path) -> None:
    rows = [chat_row(0, "a question with words", '{"answer": 1}', "json_skill"),
            chat_row(1, "another question with words", "not json at all", "json_skill"),
            chat_row(2, "a third question with words", "not json either", "free")]
    write_config(tmp_path / "repo", "c", to_table(rows))
    config = CurationConfig(skill_filters={"json_skill": FilterConfig(format="json")},
                            token_sample=0)
    curate(tmp_path / "repo", tmp_path / "out", config, progress=False)
    gone = removed(tmp_path / "out")
    assert gone.select("id", "reason").rows() == [(stable_id("row", 1), "parse_json")]


def test_language_filter_and_user_only_dedup(tmp_path: Path) -> None:
    pytest.importorskip("py3langid")
    rows = [
        chat_row(0, "What is the tallest mountain on Earth and how tall is it?",
                 "Mount Everest is the tallest mountain, about 8,849 metres above sea level."),
        chat_row(1, "What is the tallest mountain on Earth and how tall is it?",
                 "Everest, at roughly 8,849 m, is the highest peak on the planet."),
        chat_row(2, "Quelle est la plus haute montagne du monde et quelle est sa hauteur ?",
                 "L'Everest est la plus haute montagne du monde, environ 8 849 mètres."),
    ]
    write_config(tmp_path / "repo", "c", to_table(rows))
    config = CurationConfig(filters=FilterConfig(languages=["en"]), token_sample=0)
    curate(tmp_path / "repo", tmp_path / "conversation", config, progress=False)
    assert removed(tmp_path / "conversation").select("id", "reason").rows() == [
        (stable_id("row", 2), "language")]  # same prompt, different answers: both kept
    curate(tmp_path / "repo", tmp_path / "user", config.model_copy(update={"dedup_on": "user"}),
           progress=False)
    assert set(removed(tmp_path / "user")["reason"]) == {"language", "exact_duplicate"}
