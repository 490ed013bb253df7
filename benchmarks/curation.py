"""Curation accuracy, speed and memory against peers, on deterministic planted corpora.

    python benchmarks/curation.py --docs 30000 --rss-docs 0 --items 3000 --accuracy-pairs 150

Accuracy (--accuracy-pairs N planted pairs per kind and script; 0 skips it): a corpus of
instruction-like text in English, Portuguese, Russian, Chinese and Japanese with
- planted true near-duplicates (dup:*): word or character substitutions, an inserted filler
  word, a deleted word, a moved sentence, Unicode variants (NFD + upper case; half-width marks);
- hard negatives (neg:*) that share most of their text but are different tasks: one passage with
  another question, a negated sentence, another number; and in English a code-review template
  with another function body, a math word problem with another number, short texts with
  another operator.
Ours (`steps.curation`, default settings) and the peers (datasketch, rensa; str.split 5-gram
shingles, connected components of their LSH edges) run on it; the table gives, per kind and
script, recall among planted pairs whose reference Jaccard (an independent slow rendering of
our documented normalisation and 5-token shingles) is >= 0.8, and false merges per hard-negative
kind; precision is over every merged pair (merges of rows with equal texts are right).

Speed (--docs): a corpus of Zipf-vocabulary ~300-word documents (2% exact duplicates, 10%
near-duplicates at planted Jaccard levels 0.5/0.7/0.85/0.9/0.95, 1% documents carrying a
benchmark item) and a benchmark set (--items), then times, each in its own single-threaded
process:
- near-dup: ours (exact + MinHash LSH, `steps.curation`), datasketch MinHashLSH, rensa
  RMinHashLSH and datatrove's MinHash pipeline (whitespace tokenizer: str.split), all from the
  same Parquet;
- decontamination (8-grams): ours (Tülu rule and strict), a plain Python set scan, a polars
  explode-and-join;
- ours on the --rss-docs corpus: the whole `curate()` (exact + near-dup + decontamination,
  output written) for peak RSS, and decontamination again (start-up amortised).
Per-core throughput = documents / CPU seconds of the process (user + system, all its threads and
children), imports excluded for every system (for ours, also the ~0.2 s of imports numba defers
to its first kernel call); every worker runs with POLARS_MAX_THREADS / NUMBA_NUM_THREADS /
RAYON_NUM_THREADS / OMP_NUM_THREADS = 1. Our numba kernels are compiled into their on-disk cache
by a warm-up on a tiny corpus first (a one-off per installation).
Precision and recall are over document pairs: a predicted pair is two rows a system put in one
cluster (positive if their exact 5-gram Jaccard is >= 0.8); recall is the share
of planted pairs with exact Jaccard >= 0.8 that a system put in one cluster. Peers run with
datatrove's default 14 bands x 8 rows (112 permutations), ours with its defaults (32 x 8 + exact
verification). Peers need the `bench` extra: datasketch, rensa, datatrove.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB = 50_000
ZIPF = 1.1
BATCH = 10_000  # corpus generation batch; planted pairs stay within a batch
LEVELS = (0.5, 0.7, 0.85, 0.9, 0.95)
SHINGLE = 5
PEER_BANDS, PEER_ROWS = 14, 8
ONE_THREAD = {name: "1" for name in (
    "POLARS_MAX_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# ---------------------------------------------------------------- corpus
def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    seen: dict[bytes, None] = {}
    while len(seen) < VOCAB:
        for length in rng.integers(2, 11, VOCAB):
            seen.setdefault(letters[rng.integers(0, 26, length)].tobytes(), None)
    return np.array([w.decode() for w in list(seen)[:VOCAB]], dtype=object)


def _zipf_words(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(cdf, rng.random(n)).astype(np.int32)


def _shingles(words: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def _variant(rng: np.random.Generator, cdf: np.ndarray, source: np.ndarray,
             level: float) -> np.ndarray:
    """`source` with m words replaced at positions >= 5 apart, m chosen so Jaccard ≈ level."""
    shingles = len(source) - SHINGLE + 1
    m = max(1, round(shingles * (1 - level) / (SHINGLE * (1 + level))))
    slots = rng.choice(len(source) // SHINGLE, size=m, replace=False) * SHINGLE
    out = source.copy()
    out[slots] = _zipf_words(rng, cdf, m)
    return out


def build_corpus(workdir: Path, docs: int, items: int, seed: int = 0) -> None:
    """corpus.parquet (id, text), bench.jsonl (question), truth.parquet (planted pairs/leaks)."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    weights = 1.0 / np.arange(1, VOCAB + 1) ** ZIPF
    cdf = np.cumsum(weights) / weights.sum()
    bench = [_zipf_words(rng, cdf, int(k)) for k in rng.integers(20, 61, items)]
    with open(workdir / "bench.jsonl", "w") as f:
        for item in bench:
            f.write(json.dumps({"question": " ".join(vocab[item])}) + "\n")
    writer = None
    truth: dict[str, list] = {"a": [], "b": [], "kind": [], "level": [], "jaccard": []}
    for start in range(0, docs, BATCH):
        n = min(BATCH, docs - start)
        lengths = rng.integers(250, 351, n)
        body = [_zipf_words(rng, cdf, int(k)) for k in lengths]
        roles = rng.permutation(n)  # disjoint sources and targets for each planting
        n_exact, n_near, n_leak = round(n * 0.02), round(n * 0.10), round(n * 0.01)
        exact_src, exact_dst = roles[:n_exact], roles[n_exact:2 * n_exact]
        near_src = roles[2 * n_exact:2 * n_exact + n_near]
        near_dst = roles[2 * n_exact + n_near:2 * n_exact + 2 * n_near]
        leak = roles[2 * n_exact + 2 * n_near:2 * n_exact + 2 * n_near + n_leak]
        for s, d in zip(exact_src, exact_dst, strict=True):
            body[d] = body[s].copy()
            truth["a"].append(start + s), truth["b"].append(start + d)
            truth["kind"].append("exact"), truth["level"].append(1.0), truth["jaccard"].append(1.0)
        for i, (s, d) in enumerate(zip(near_src, near_dst, strict=True)):
            level = LEVELS[i % len(LEVELS)]
            body[d] = _variant(rng, cdf, body[s], level)
            truth["a"].append(start + s), truth["b"].append(start + d)
            truth["kind"].append("near"), truth["level"].append(level)
            truth["jaccard"].append(jaccard(body[s], body[d]))
        for d in leak:
            item = int(rng.integers(0, items))
            at = int(rng.integers(0, len(body[d]) - len(bench[item])))
            body[d] = body[d].copy()
            body[d][at:at + len(bench[item])] = bench[item]
            truth["a"].append(start + d), truth["b"].append(item)
            truth["kind"].append("leak"), truth["level"].append(0.0), truth["jaccard"].append(0.0)
        flat = pa.array(vocab[np.concatenate(body)].tolist(), pa.string())
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in body])]).astype(np.int32)
        text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), flat), " ")
        table = pa.table({"id": [f"doc{start + i:08d}" for i in range(n)], "text": text})
        writer = writer or pq.ParquetWriter(workdir / "corpus.parquet", table.schema)
        writer.write_table(table, row_group_size=BATCH)
    writer.close()
    pq.write_table(pa.table(truth), workdir / "truth.parquet")


# ---------------------------------------------------------------- accuracy corpus (false merges)
SCRIPTS = ("en", "pt", "ru", "zh", "ja")
WORDS = {
    "en": (
        "river", "town", "market", "bridge", "merchant", "salt", "wool", "timber", "mountain", "coast",
        "century", "bank", "family", "railway", "warehouse", "visitor", "photograph", "road", "trade",
        "defence", "meeting", "place", "winter", "summer", "teacher", "student", "garden", "kitchen",
        "library", "letter", "window", "morning", "evening", "travel", "journey", "history", "music",
        "painting", "village", "harbour", "island", "forest", "valley", "castle", "festival", "weather",
        "engine", "computer", "network", "program", "language", "question", "answer", "problem",
        "reason", "example", "carefully", "quickly", "slowly", "often", "usually", "always", "early",
        "later", "quietly", "clearly", "simply", "the", "a", "of", "to", "and", "in", "on", "with",
        "for", "from", "by", "about", "over", "under", "between", "after", "before",
    ),
    "pt": (
        "rio", "cidade", "mercado", "ponte", "comerciante", "sal", "lã", "madeira", "montanha", "costa",
        "século", "margem", "família", "ferrovia", "armazém", "visitante", "fotografia", "estrada",
        "comércio", "defesa", "encontro", "lugar", "inverno", "verão", "professor", "aluno", "jardim",
        "cozinha", "biblioteca", "carta", "janela", "manhã", "tarde", "viagem", "jornada", "história",
        "música", "pintura", "aldeia", "porto", "ilha", "floresta", "vale", "castelo", "festa", "tempo",
        "motor", "computador", "rede", "programa", "língua", "pergunta", "resposta", "problema",
        "razão", "exemplo", "cuidadosamente", "rapidamente", "devagar", "sempre", "cedo", "depois",
        "claramente", "o", "a", "de", "para", "e", "em", "com", "por", "sobre", "entre", "após",
        "antes",
    ),
    "ru": (
        "река", "город", "рынок", "мост", "купец", "соль", "шерсть", "лес", "гора", "берег", "век",
        "семья", "железная", "дорога", "склад", "гость", "снимок", "путь", "торговля", "оборона",
        "встреча", "место", "зима", "лето", "учитель", "ученик", "сад", "кухня", "библиотека", "письмо",
        "окно", "утро", "вечер", "поездка", "история", "музыка", "картина", "деревня", "гавань",
        "остров", "долина", "замок", "праздник", "погода", "двигатель", "компьютер", "сеть",
        "программа", "язык", "вопрос", "ответ", "задача", "причина", "пример", "осторожно", "быстро",
        "медленно", "часто", "всегда", "рано", "позже", "ясно", "и", "в", "на", "с", "для", "от", "по",
        "о", "над", "под", "между", "после", "перед",
    ),
}
ZH_CHARS = ("的一是在了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
            "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使"
            "点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明"
            "看原又么利比或但质气第向道命此变条只结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象"
            "员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几"
            "九区强放决西被干做必战先回则任取据处府研质信")
JA_CHARS = ("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
            "がぎぐげござじずぜぞだでどばびぶべぼアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホ"
            "マミムメモヤユヨラリルレロワン日本山川人時間年月国語学生先話見行来食書読気手目耳口心花天雨雪風海"
            "空町村駅道車電家族友犬猫朝昼夜春夏秋冬東西南北上下左右大小高安新古多少長短明暗")
NEGATION = {"en": "not", "pt": "não", "ru": "не", "zh": "不", "ja": "ない"}
FILLER = {"en": "really", "pt": "bem", "ru": "очень", "zh": "很", "ja": "とても"}
QUESTION = {"en": "Question:", "pt": "Pergunta:", "ru": "Вопрос:", "zh": "问题：", "ja": "質問："}
CODE_TEMPLATE = (
    "You are reviewing a pull request for a small utility library. Read the function below "
    "carefully and write a short review that says whether it is correct, whether its name "
    "matches what it does, whether the tests cover the edge cases, whether the documentation "
    "explains the arguments and the return value, and whether anything should change before it "
    "is merged into the main branch. Keep the review polite, concrete and under one hundred "
    "words, and end it with a verdict.\n\n```python\ndef {name}(a, b):\n    {body}\n```")
CODE_BODIES = ("return a + b", "return a - b", "return a * b", "return a / b", "return a % b",
               "return a ** b", "return a // b", "return max(a, b)", "return min(a, b)",
               "return (a + b) / 2", "return abs(a - b)", "return a if a > b else b")
MATH = ("Solve the following word problem step by step. Show every intermediate result, state "
        "the units, check the answer by substituting it back, and give the final answer on its "
        "own line after the words Final answer. Problem: {name} buys {a} apples at {b} dollars "
        "each and {c} pears at {d} dollars each. {name} pays with a {e} dollar note. How much "
        "change does {name} get?")
NAMES = ("Ana", "Boris", "Chen", "Dana", "Emil", "Fatima", "Goro", "Hugo", "Ines", "Jon")


def _sentence(rng: np.random.Generator, script: str, lo: int = 10, hi: int = 20) -> list[str]:
    """A sentence as a list of tokens (words, or characters for zh/ja), without its end mark."""
    if script == "zh":
        return list(rng.choice(list(ZH_CHARS), int(rng.integers(lo + 6, hi + 12))))
    if script == "ja":
        return list(rng.choice(list(JA_CHARS), int(rng.integers(lo + 6, hi + 12))))
    return list(rng.choice(WORDS[script], int(rng.integers(lo, hi))))


def _join(sentences: list[list[str]], script: str) -> str:
    if script in ("zh", "ja"):
        return "".join("".join(s) + "。" for s in sentences)
    return " ".join(" ".join(s).capitalize() + "." for s in sentences)


def _edit_positions(rng: np.random.Generator, sentences: list[list[str]], k: int,
                    script: str) -> list[tuple[int, int]]:
    """k (sentence, token) slots in different sentences of >= 12 tokens, never a negation."""
    long = [i for i, s in enumerate(sentences) if len(s) >= 12]
    chosen = rng.choice(long, size=min(k, len(long)), replace=False)
    slots = []
    for i in chosen:
        j = int(rng.integers(2, len(sentences[i]) - 2))
        if sentences[i][j] not in NEGATION.values():
            slots.append((int(i), j))
    return slots


def _near_duplicate(rng: np.random.Generator, sentences: list[list[str]], kind: str,
                    script: str) -> list[list[str]] | str:
    """A benign variant of a document (a planted true near-duplicate)."""
    out = [s.copy() for s in sentences]
    pool = (list(ZH_CHARS) if script == "zh" else list(JA_CHARS) if script == "ja"
            else WORDS[script])
    if kind == "substitution":
        for i, j in _edit_positions(rng, out, 2, script):
            out[i][j] = str(rng.choice([w for w in pool if w != out[i][j]]))
    elif kind == "insertion":
        for i, j in _edit_positions(rng, out, 1, script):
            out[i].insert(j, FILLER[script])
    elif kind == "deletion":
        for i, j in _edit_positions(rng, out, 1, script):
            del out[i][j]
    elif kind == "reorder":
        moved = out.pop(int(rng.integers(0, len(out) - 1)))
        out.insert(len(out), moved)
    elif kind == "unicode":
        text = _join(out, script)
        if script in ("zh", "ja"):  # full-width digits and ASCII punctuation as full width
            return text.replace("。", "｡")
        return unicodedata.normalize("NFD", text.upper())
    return out


def build_accuracy_corpus(workdir: Path, per_cell: int, seed: int = 1) -> None:
    """accuracy.parquet (id, text) and accuracy_truth.parquet: per planted pair its group, kind
    ("dup:<edit>" or "neg:<difference>"), script and both row numbers. Background rows are
    unrelated documents."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    truth: dict[str, list] = {"a": [], "b": [], "kind": [], "script": []}

    def pair(a: str, b: str, kind: str, script: str) -> None:
        truth["a"].append(len(texts)), truth["b"].append(len(texts) + 1)
        truth["kind"].append(kind), truth["script"].append(script)
        texts.extend([a, b])

    for script in SCRIPTS:
        for _ in range(per_cell):
            passage = [_sentence(rng, script) for _ in range(int(rng.integers(5, 9)))]
            for kind in ("substitution", "insertion", "deletion", "reorder", "unicode"):
                doc = [s.copy() for s in passage]
                doc[int(rng.integers(0, len(doc)))] = _sentence(rng, script)  # its own document
                variant = _near_duplicate(rng, doc, kind, script)
                pair(_join(doc, script), variant if isinstance(variant, str)
                     else _join(variant, script), f"dup:{kind}", script)
            # hard negatives: one passage, another question; a negated sentence; a filler word
            # that is a negation
            q1, q2 = _sentence(rng, script, 5, 9), _sentence(rng, script, 5, 9)
            head = _join(passage, script) + "\n" + QUESTION[script] + " "
            pair(head + _join([q1], script), head + _join([q2], script), "neg:question", script)
            negated = [s.copy() for s in passage]
            i, j = _edit_positions(rng, negated, 1, script)[0]
            negated[i].insert(j, NEGATION[script])
            pair(_join(passage, script), _join(negated, script), "neg:negation", script)
            numbered = [s.copy() for s in passage]
            k = int(rng.integers(0, len(numbered)))
            numbered[k] = numbered[k][:4] + [str(int(rng.integers(2, 90)))] + numbered[k][4:]
            renumbered = [s.copy() for s in numbered]
            renumbered[k][4] = str(int(renumbered[k][4]) + int(rng.integers(1, 9)))
            pair(_join(numbered, script), _join(renumbered, script), "neg:number", script)
            texts.append(_join([_sentence(rng, script) for _ in range(6)], script))  # background
    for _ in range(per_cell):  # code and math (English instructions)
        name = "f" + "".join(rng.choice(list("abcdefghij"), 4))
        one, two = rng.choice(len(CODE_BODIES), 2, replace=False)
        pair(CODE_TEMPLATE.format(name=name, body=CODE_BODIES[one]),
             CODE_TEMPLATE.format(name=name, body=CODE_BODIES[two]), "neg:code", "en")
        values = {k: int(v) for k, v in zip("abcde", rng.integers(2, 20, 5), strict=True)}
        values["e"] = 100
        other = dict(values, **{str(rng.choice(list("abcd"))): int(rng.integers(21, 40))})
        person = str(rng.choice(NAMES))
        pair(MATH.format(name=person, **values), MATH.format(name=person, **other), "neg:math",
             "en")
        a, b = (int(x) for x in rng.integers(2, 99, 2))
        op1, op2 = rng.choice(["+", "-", "*", "/", "^", "%"], 2, replace=False)
        pair(f"Simplify {a} {op1} {b}.", f"Simplify {a} {op2} {b}.", "neg:short", "en")
    pq.write_table(pa.table({"id": [f"acc{i:07d}" for i in range(len(texts))], "text": texts}),
                   workdir / "accuracy.parquet")
    truth["jaccard"] = [reference_jaccard(texts[a], texts[b])
                        for a, b in zip(truth["a"], truth["b"], strict=True)]
    pq.write_table(pa.table(truth), workdir / "accuracy_truth.parquet")


def _reference_tokens(text: str) -> list[str]:
    """An independent, slow rendering of the documented tokenisation (steps/curation/ngrams.py):
    NFKC + casefold; words of letters/digits; symbols and CJK/kana characters one token each."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    tokens, word = [], ""
    for char in text:
        category = unicodedata.category(char)
        cjk = "\u3040" <= char <= "\u30ff" or "\u4e00" <= char <= "\u9fff"
        if (category[0] in "LMN" or char == "_") and not cjk:
            word += char
            continue
        if word:
            tokens.append(word)
            word = ""
        if cjk or category[0] == "S" or char in "+-*/=<>^%#&|~@$\\()[]{}":
            tokens.append(char)
    return [*tokens, word] if word else tokens


def reference_jaccard(a: str, b: str) -> float:
    def shingles(text: str) -> set[tuple[str, ...]]:
        t = _reference_tokens(text)
        return {tuple(t[i:i + SHINGLE]) for i in range(max(len(t) - SHINGLE + 1, 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def run_ours_accuracy(workdir: Path) -> np.ndarray:
    from steps.curation.config import CurationConfig, FilterConfig
    from steps.curation.run import analyse
    from steps.curation.sources import ConfigInput

    config = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                            token_sample=0)
    decisions = analyse([ConfigInput("default", (workdir / "accuracy.parquet",))], config, False)
    return _pairs_from_duplicate_of(decisions.duplicate_of)


def accuracy_scores(system: str, pairs: np.ndarray, workdir: Path) -> list[dict]:
    """Rows of the accuracy table: per (kind, script), planted pairs, merged, and for duplicates
    recall among pairs with reference Jaccard >= 0.8; false merges per hard-negative kind."""
    truth = pq.read_table(workdir / "accuracy_truth.parquet").to_pylist()
    merged = {(int(a), int(b)) for a, b in pairs}
    planted = {(t["a"], t["b"]): t for t in truth}
    rows: dict[tuple[str, str], dict] = {}
    for t in truth:
        cell = rows.setdefault((t["kind"], t["script"]), {
            "system": system, "kind": t["kind"], "script": t["script"], "pairs": 0,
            "pairs_j_ge_0.8": 0, "merged": 0, "merged_j_ge_0.8": 0})
        hit = (t["a"], t["b"]) in merged
        cell["pairs"] += 1
        cell["merged"] += hit
        if t["jaccard"] >= 0.8:
            cell["pairs_j_ge_0.8"] += 1
            cell["merged_j_ge_0.8"] += hit
    texts = pq.read_table(workdir / "accuracy.parquet", columns=["text"]).column(0).to_pylist()
    outside = [p for p in merged if p not in planted]
    # Rows of different planted pairs can be equal by chance (e.g. two "Simplify 12 + 7."): such
    # a merge is right; any other merge outside the planted pairs is a false one.
    equal = sum(_reference_tokens(texts[a]) == _reference_tokens(texts[b]) for a, b in outside)
    true_merges = equal + sum(1 for p in merged
                              if p in planted and planted[p]["kind"].startswith("dup:"))
    summary = {"system": system, "merged_pairs": len(merged), "true_merges": true_merges,
               "merges_outside_planted_pairs": len(outside),
               "precision": true_merges / len(merged) if merged else 1.0}
    return [summary, *rows.values()]


def print_accuracy(results: list[list[dict]]) -> None:
    print("\nAccuracy on the planted corpus (pairs: planted; merged: pairs the system put in one "
          "cluster).\nDuplicates (dup:*): recall = merged / pairs among pairs with reference "
          "Jaccard >= 0.8. Hard negatives (neg:*): every merge is a false merge.")
    for rows in results:
        summary, cells = rows[0], rows[1:]
        print(f"\n{summary['system']}: precision {summary['precision']:.4f} "
              f"({summary['true_merges']} true of {summary['merged_pairs']} merged pairs; "
              f"{summary['merges_outside_planted_pairs']} outside planted pairs)")
        print(f"  {'kind':18} " + " ".join(f"{s:>12}" for s in SCRIPTS))
        for kind in sorted({c["kind"] for c in cells}):
            line = []
            for script in SCRIPTS:
                cell = next((c for c in cells if c["kind"] == kind and c["script"] == script), None)
                if cell is None:
                    line.append(f"{'':>12}")
                elif kind.startswith("dup:"):
                    n = cell["pairs_j_ge_0.8"]
                    line.append(f"{cell['merged_j_ge_0.8'] / n if n else float('nan'):>6.3f} "
                                f"({n:>3})")
                else:
                    line.append(f"{cell['merged']:>5} false")
            print(f"  {kind:18} " + " ".join(line))
        recall = {}
        for script in SCRIPTS:
            dups = [c for c in cells if c["kind"].startswith("dup:") and c["script"] == script]
            n = sum(c["pairs_j_ge_0.8"] for c in dups)
            recall[script] = sum(c["merged_j_ge_0.8"] for c in dups) / n if n else float("nan")
        false = sum(c["merged"] for c in cells if c["kind"].startswith("neg:"))
        print("  recall per script (J >= 0.8): "
              + ", ".join(f"{s} {r:.3f}" for s, r in recall.items())
              + f"; false merges on hard negatives: {false}")
        summary["recall_per_script"] = recall
        summary["false_merges"] = false


# ---------------------------------------------------------------- systems (run in workers)
def _texts(corpus: Path, rows: int = BATCH):
    for batch in pq.ParquetFile(corpus).iter_batches(batch_size=rows, columns=["text"]):
        yield from batch.column(0).to_pylist()


def _peer_shingles(text: str) -> list[bytes]:
    words = text.lower().split()
    return [" ".join(words[i:i + SHINGLE]).encode() for i in range(max(len(words) - SHINGLE + 1, 1))]


def run_ours_near(workdir: Path) -> np.ndarray:
    from steps.curation.config import CurationConfig, FilterConfig
    from steps.curation.run import analyse
    from steps.curation.sources import ConfigInput

    config = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                            token_sample=0)
    decisions = analyse([ConfigInput("default", (workdir / "corpus.parquet",))], config, False)
    return _pairs_from_duplicate_of(decisions.duplicate_of)


def run_datasketch(workdir: Path, corpus: str = "corpus.parquet") -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=PEER_BANDS * PEER_ROWS, params=(PEER_BANDS, PEER_ROWS))
    edges = []
    for i, text in enumerate(_texts(workdir / corpus)):
        m = MinHash(num_perm=PEER_BANDS * PEER_ROWS)
        m.update_batch(_peer_shingles(text))
        edges += [(j, i) for j in lsh.query(m)]
        lsh.insert(i, m)
    return _cluster_pairs(np.array(edges, dtype=np.int64).reshape(-1, 2))


def run_rensa(workdir: Path, corpus: str = "corpus.parquet") -> np.ndarray:
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=0.8, num_perm=PEER_BANDS * PEER_ROWS, num_bands=PEER_BANDS)
    edges = []
    for i, text in enumerate(_texts(workdir / corpus)):
        m = RMinHash(num_perm=PEER_BANDS * PEER_ROWS, seed=1)
        m.update([s.decode() for s in _peer_shingles(text)])
        edges += [(j, i) for j in lsh.query(m)]
        lsh.insert(i, m)
    return _cluster_pairs(np.array(edges, dtype=np.int64).reshape(-1, 2))


def run_datatrove(workdir: Path) -> np.ndarray:
    import struct

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        """str.split: datatrove's own WhitespaceTokenizer calls spaCy's "xx" tokenizer, which
        is slower (and needs spacy); plain splitting favours datatrove."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    import xxhash
    from datatrove.utils.hashes import xxhash as datatrove_xxhash

    # datatrove 0.10.1 passes str to xxhash, which xxhash >= 4 rejects: encode, as xxhash 3 did.
    datatrove_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(
        data.encode() if isinstance(data, str) else data)
    config = MinhashConfig(n_grams=SHINGLE, num_buckets=PEER_BANDS, hashes_per_bucket=PEER_ROWS)
    out = workdir / "datatrove"
    shutil.rmtree(out, ignore_errors=True)  # datatrove skips tasks it finds completed there
    reader = ParquetReader(str(workdir), glob_pattern="corpus.parquet", text_key="text",
                           id_key="id")
    stages = [
        ([reader, MinhashDedupSignature(output_folder=str(out / "sigs"), config=config,
                                        language=SplitTokenizer())], 1),
        ([MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"),
                              config=config)], PEER_BANDS),
        ([MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "ids"),
                              config=config, save_cluster_id=True)], 1),
    ]
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=str(out / f"logs{i}")).run()
    raw = b"".join(p.read_bytes() for p in sorted((out / "ids").glob("*.clusters")))
    doc_cluster = np.array(list(struct.iter_unpack("<II", raw)), dtype=np.int64).reshape(-1, 2)
    return _pairs_from_labels(doc_cluster[:, 0], doc_cluster[:, 1])


def run_ours_decont(workdir: Path, mode: str) -> np.ndarray:
    from steps.curation.config import CurationConfig, FilterConfig
    from steps.curation.run import analyse
    from steps.curation.sources import ConfigInput

    config = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                            exact_dedup=False, near_dup=False, decontamination=mode,
                            benchmarks=[str(workdir / "bench.jsonl")], token_sample=0)
    decisions = analyse([ConfigInput("default", (workdir / "corpus.parquet",))], config, False)
    return np.flatnonzero(decisions.reason >= 0)


def _bench_grams(workdir: Path) -> set[tuple[str, ...]]:
    grams = set()
    with open(workdir / "bench.jsonl") as f:
        for line in f:
            words = json.loads(line)["question"].lower().split()
            grams.update(zip(*[words[i:] for i in range(8)], strict=False))
    return grams


def run_python_set(workdir: Path) -> np.ndarray:
    grams = _bench_grams(workdir)
    flagged = []
    for i, text in enumerate(_texts(workdir / "corpus.parquet")):
        words = text.lower().split()
        if not grams.isdisjoint(zip(*[words[k:] for k in range(8)], strict=False)):
            flagged.append(i)
    return np.array(flagged, dtype=np.int64)


def run_polars_join(workdir: Path) -> np.ndarray:
    import polars as pl

    def gram_frame(frame: pl.DataFrame, column: str) -> pl.DataFrame:
        words = (frame.with_row_index("doc").select("doc", pl.col(column).str.to_lowercase()
                                                    .str.split(" ").alias("w")).explode("w"))
        shifted = [pl.col("w").shift(-k).over("doc") for k in range(8)]
        return words.select("doc", pl.concat_str(shifted, separator=" ").alias("g")).drop_nulls()

    bench = gram_frame(pl.read_ndjson(workdir / "bench.jsonl"), "question").select("g").unique()
    flagged, offset = [], 0
    for batch in pl.scan_parquet(workdir / "corpus.parquet").select("text").collect_batches(
            chunk_size=BATCH):
        hits = gram_frame(batch, "text").join(bench, on="g", how="semi").get_column("doc").unique()
        flagged.append(hits.to_numpy().astype(np.int64) + offset)
        offset += batch.height
    return np.sort(np.concatenate(flagged))


def run_ours_rss(workdir: Path) -> np.ndarray:
    """The whole `curate()` (exact + near-dup + decontamination, output written) for peak RSS."""
    from steps.curation.config import CurationConfig, FilterConfig
    from steps.curation.run import REMOVED_FILE, curate

    config = CurationConfig(text_column="text", filters=FilterConfig(min_words=0, refusal=False),
                            benchmarks=[str(workdir / "bench.jsonl")], token_sample=0)
    curate(str(workdir / "corpus.parquet"), workdir / "curated", config, progress=False)
    return pq.read_table(workdir / "curated" / REMOVED_FILE, columns=["row"]).column(0).to_numpy()


_OURS = ("steps.curation.run",)
IMPORTS = {"ours": _OURS, "ours-tulu": _OURS, "ours-strict": _OURS, "ours-all": _OURS,
           "ours-accuracy": _OURS, "datasketch": ("datasketch",), "rensa": ("rensa",),
           "datasketch-accuracy": ("datasketch",), "rensa-accuracy": ("rensa",),
           "polars-join": ("polars",),
           "datatrove": ("datatrove.executor", "datatrove.pipeline.dedup.minhash",
                         "datatrove.pipeline.readers")}
SYSTEMS = {  # name -> (task, run)
    "ours": ("near-dup", run_ours_near), "datasketch": ("near-dup", run_datasketch),
    "rensa": ("near-dup", run_rensa), "datatrove": ("near-dup", run_datatrove),
    "ours-tulu": ("decont", lambda w: run_ours_decont(w, "tulu")),
    "ours-strict": ("decont", lambda w: run_ours_decont(w, "strict")),
    "python-set": ("decont", run_python_set), "polars-join": ("decont", run_polars_join),
    "ours-all": ("all", run_ours_rss),
    "ours-accuracy": ("accuracy", run_ours_accuracy),
    "datasketch-accuracy": ("accuracy", lambda w: run_datasketch(w, "accuracy.parquet")),
    "rensa-accuracy": ("accuracy", lambda w: run_rensa(w, "accuracy.parquet")),
}


# ---------------------------------------------------------------- evaluation helpers
def _pairs_from_labels(rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    order = np.lexsort((rows, labels))
    rows, labels = rows[order], labels[order]
    pairs = []
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(rows)], strict=True):
        members = rows[s:e]
        pairs += [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _cluster_pairs(edges: np.ndarray) -> np.ndarray:
    """Peers merge by connected components of their LSH edges (as datatrove and text-dedup do)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(edges.max()) + 1 if len(edges) else 0
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    members = np.unique(edges)
    return _pairs_from_labels(members, labels[members])


def _pairs_from_duplicate_of(duplicate_of: np.ndarray) -> np.ndarray:
    root = np.where(duplicate_of >= 0, duplicate_of, np.arange(len(duplicate_of)))
    while True:  # follow chains (an exact duplicate of a row that is itself a near-duplicate)
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    members = np.unique(np.concatenate([np.flatnonzero(duplicate_of >= 0),
                                        root[duplicate_of >= 0]]))
    return _pairs_from_labels(members, root[members])


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def worker(system: str, workdir: Path, out: Path) -> None:
    """Run one system; imports are done before the clock starts, for every system alike
    (pandas too: pyarrow imports it on first use, which would cost ~0.5 s inside the clock)."""
    for module in ("pandas", "pyarrow", *IMPORTS.get(system, ())):
        __import__(module)
    if IMPORTS.get(system) == _OURS:
        # numba defers ~0.2 s of its own module imports to the first kernel call: do them here,
        # with the other imports (the --rss-docs decontamination row shows the rate with them).
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
    result = SYSTEMS[system][1](workdir)
    wall, cpu = time.perf_counter() - start_wall, _cpu_seconds() - start_cpu
    np.save(out, result)
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_kib": _peak_rss_kib()}))


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across exec from the
    parent that forked us, so a worker would report the benchmark driver's memory."""
    with open("/proc/self/status") as status:
        own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # datatrove's, if any
    return max(own, children)


def measure(system: str, workdir: Path) -> tuple[dict, np.ndarray]:
    out = workdir / f"result-{system}.npy"
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run([sys.executable, __file__, "--worker", system, "--workdir", str(workdir)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{system} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


def near_dup_scores(pairs: np.ndarray, workdir: Path, texts: list[str]) -> tuple[float, float]:
    truth = pq.read_table(workdir / "truth.parquet").to_pylist()
    known = {(min(t["a"], t["b"]), max(t["a"], t["b"])): t["jaccard"] for t in truth
             if t["kind"] != "leak"}
    predicted = {(int(a), int(b)) for a, b in pairs}
    positive = [pair for pair, j in known.items() if j >= 0.8]
    recall = sum(pair in predicted for pair in positive) / max(len(positive), 1)
    good = 0
    for a, b in predicted:
        j = known.get((a, b))
        if j is None:
            j = jaccard(np.array(texts[a].split()), np.array(texts[b].split()))
        good += j >= 0.8
    return (good / len(predicted) if predicted else 1.0), recall


def decont_scores(flagged: np.ndarray, workdir: Path) -> tuple[float, float]:
    leaks = {t["a"] for t in pq.read_table(workdir / "truth.parquet").to_pylist()
             if t["kind"] == "leak"}
    got = set(flagged.tolist())
    return len(got & leaks) / max(len(got), 1), len(got & leaks) / max(len(leaks), 1)


def warm_up(workdir: Path) -> None:
    """Compile our numba kernels into their on-disk cache on a tiny corpus, so that no timed run
    includes compilation (a one-off per installation, seconds)."""
    tiny = workdir / "warm-up"
    tiny.mkdir(parents=True, exist_ok=True)
    build_corpus(tiny, 200, 50)
    for system in ("ours", "ours-tulu", "ours-strict"):
        measure(system, tiny)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="near-dup/decont corpus size")
    parser.add_argument("--rss-docs", type=int, default=1_000_000, help="0 skips the RSS run")
    parser.add_argument("--items", type=int, default=10_000, help="benchmark items")
    parser.add_argument("--peers", default="datasketch,rensa",
                        help="comma-separated: datasketch, rensa, datatrove")
    parser.add_argument("--accuracy-pairs", type=int, default=200,
                        help="planted pairs per (kind, script) of the accuracy corpus; 0 skips it")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench-curation")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workdir, args.workdir / f"result-{args.worker}.npy")
        return
    warm_up(args.workdir)
    if args.accuracy_pairs:
        accuracy(args.workdir / f"accuracy-{args.accuracy_pairs}", args.accuracy_pairs,
                 [p for p in args.peers.split(",") if p in ("datasketch", "rensa")])
    rows = []
    runs = ((args.docs, ["ours", *filter(None, args.peers.split(",")), "ours-tulu",
                         "ours-strict", "python-set", "polars-join"]),
            (args.rss_docs, ["ours-all", "ours-tulu"]))  # decont again: start-up amortised
    for docs, systems in runs:
        if not docs:
            continue
        workdir = args.workdir / f"{docs}"
        workdir.mkdir(parents=True, exist_ok=True)
        if not (workdir / "truth.parquet").exists():
            started = time.perf_counter()
            build_corpus(workdir, docs, args.items)
            print(f"corpus of {docs} docs built in {time.perf_counter() - started:.0f} s",
                  flush=True)
        texts: list[str] | None = None
        for system in systems:
            stats, result = measure(system, workdir)
            task = SYSTEMS[system][0]
            if task == "near-dup":
                texts = texts or pq.read_table(workdir / "corpus.parquet",
                                               columns=["text"]).column(0).to_pylist()
                precision, recall = near_dup_scores(result, workdir, texts)
            elif task == "decont":
                precision, recall = decont_scores(result, workdir)
            else:
                precision, recall = float("nan"), float("nan")
            rows.append({"task": task, "system": system, "docs": docs,
                         "docs_per_cpu_s": docs / stats["cpu"], "wall_s": stats["wall"],
                         "cpu_s": stats["cpu"], "rss_mib": stats["rss_kib"] / 1024,
                         "precision": precision, "recall": recall})
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)


def accuracy(workdir: Path, per_cell: int, peers: list[str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "accuracy_truth.parquet").exists():
        started = time.perf_counter()
        build_accuracy_corpus(workdir, per_cell)
        print(f"accuracy corpus built in {time.perf_counter() - started:.0f} s", flush=True)
    results = []
    for system in ["ours", *peers]:
        stats, pairs = measure(f"{system}-accuracy", workdir)
        results.append(accuracy_scores(system, pairs, workdir))
    print_accuracy(results)
    ours = results[0][0]
    checks = [("precision >= 0.99", ours["precision"] >= 0.99),
              ("zero false merges on hard negatives", ours["false_merges"] == 0),
              ("recall >= 0.95 for every script", min(ours["recall_per_script"].values()) >= 0.95)]
    for label, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] accuracy: {label}")


def print_table(rows: list[dict]) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nEvery system single-threaded on a {os.cpu_count()}-core machine (load average {load});"
          " docs/s/core = documents / CPU seconds of its process, start-up (not imports) included.")
    print(f"{'task':9} {'system':12} {'docs':>8} {'docs/s/core':>12} {'wall s':>8} "
          f"{'peak RSS MiB':>13} {'precision':>9} {'recall':>7}  ours ÷ this")
    ours: dict[str, float] = {}  # the first (same-corpus) row of ours per task
    for r in rows:
        if r["system"] in ("ours", "ours-tulu"):
            ours.setdefault(r["task"], r["docs_per_cpu_s"])
    for r in rows:
        ratio = ours.get(r["task"], float("nan")) / r["docs_per_cpu_s"]
        print(f"{r['task']:9} {r['system']:12} {r['docs']:>8} {r['docs_per_cpu_s']:>12,.0f} "
              f"{r['wall_s']:>8.1f} {r['rss_mib']:>13,.0f} {r['precision']:>9.4f} "
              f"{r['recall']:>7.4f}  {ratio:>6.2f}x")
    near = [r for r in rows if r["task"] == "near-dup"]
    peers = [r for r in near if r["system"] != "ours"]
    checks = []
    if near and near[0]["system"] == "ours":
        checks.append(("near-dup precision and recall >= 0.99",
                       min(near[0]["precision"], near[0]["recall"]) >= 0.99))
    if peers:
        fastest = max(peers, key=lambda r: r["docs_per_cpu_s"])
        checks.append((f"near-dup >= 3x the fastest peer ({fastest['system']}): "
                       f"{ours['near-dup'] / fastest['docs_per_cpu_s']:.2f}x",
                       ours["near-dup"] >= 3 * fastest["docs_per_cpu_s"]))
    if "decont" in ours:
        checks.append((f"decontamination >= 100k docs/s/core: {ours['decont']:,.0f}",
                       ours["decont"] >= 100_000))
    for r in rows:
        if r["task"] == "all":
            checks.append((f"peak RSS < 2 GiB on {r['docs']:,} docs: {r['rss_mib']:,.0f} MiB",
                           r["rss_mib"] < 2048))
    for label, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {label}")


if __name__ == "__main__":
    main()
