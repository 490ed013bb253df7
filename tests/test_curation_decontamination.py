"""Benchmark decontamination: the Tülu 3 rule, strict mode, reports and benchmark loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.curation import CurationConfig, curate
from steps.curation.benchmark_sets import BenchmarkSet, load_benchmark
from steps.curation.decontaminate import BenchmarkIndex, overlaps
from steps.curation.ngrams import words
from steps.curation.run import REMOVED_FILE, STATS_FILE
from steps.errors import UserError
from steps.repo_folder import write_config
from steps.rows import stable_id, to_table

RNG = np.random.default_rng(11)
VOCAB = [f"t{i}" for i in range(3000)]


def text(k: int) -> str:
    return " ".join(RNG.choice(VOCAB, k))


ITEMS = [text(20) for _ in range(30)]  # every item 20 words, so 13 8-grams


def row(i: int, user: str) -> dict:
    return {"id": stable_id("r", i), "skill": "s",
            "messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": text(30)}]}


def test_tulu_rule_needs_more_than_half_of_an_items_tokens() -> None:
    index = BenchmarkIndex.build([BenchmarkSet("bench", ITEMS)])
    item = ITEMS[4].split()
    docs = [
        "Please solve: " + " ".join(item).upper() + " thanks",  # whole item, other case
        text(10) + " " + " ".join(item[:11]) + " " + text(10),  # 11/20 tokens: > 50%
        text(10) + " " + " ".join(item[:10]) + " " + text(10),  # 10/20 tokens: not > 50%
        text(10) + " " + " ".join(item[:8]) + " " + text(10),  # one shared 8-gram
        text(40),
    ]
    tokens = words(pa.array(docs))
    tulu = overlaps(index, tokens, "tulu")
    assert tulu.row.tolist() == [0, 1]
    assert tulu.item.tolist() == [4, 4]
    assert tulu.coverage.tolist() == pytest.approx([1.0, 0.55])
    assert overlaps(index, tokens, "strict").row.tolist() == [0, 1, 2, 3]


def test_hits_are_reported_with_benchmark_name_and_item(tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": q, "answer": "x"}) + "\n" for q in ITEMS))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"problem": [text(25) for _ in range(5)]}), other)
    rows = [row(i, text(40)) for i in range(50)]
    rows.append(row(98, "Answer this. " + ITEMS[7]))
    rows.append(row(99, ITEMS[7] + " and more"))
    write_config(tmp_path / "repo", "c", to_table(rows))
    config = CurationConfig(benchmarks=[f"gsm={bench}", str(other)], token_sample=0)
    curate(tmp_path / "repo", tmp_path / "out", config, progress=False)
    hits = pl.read_parquet(tmp_path / "out" / REMOVED_FILE).filter(
        pl.col("stage") == "decontamination")
    assert sorted(hits["id"]) == sorted([stable_id("r", 98), stable_id("r", 99)])
    assert set(hits["benchmark"]) == {"gsm"} and set(hits["benchmark_item"]) == {7}
    assert set(hits["reason"]) == {"benchmark:gsm"}
    report = json.loads((tmp_path / "out" / STATS_FILE).read_text())["decontamination"]
    assert report["gsm"] | {"training_rows": 0} == {
        "items": 30, "items_too_short": 0, "items_hit": 1, "items_hit_share": round(1 / 30, 6),
        "rows_flagged": 2, "training_rows": 0, "dataset_contaminated": True}
    assert report["other"]["items_hit"] == 0 and not report["other"]["dataset_contaminated"]
    only = config.model_copy(update={"exact_dedup": False, "near_dup": False})
    curate(tmp_path / "repo", tmp_path / "only", only, progress=False)  # ids read back at the end
    assert sorted(pl.read_parquet(tmp_path / "only" / REMOVED_FILE)["id"]) == sorted(hits["id"])


def test_benchmark_sources_and_field_choice(tmp_path: Path) -> None:
    folder = tmp_path / "mmlu"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"input": "first item", "target": "A"}) + "\n")
    pq.write_table(pa.table({"input": ["second item"]}), folder / "b.parquet")
    loaded = load_benchmark(str(folder))
    assert (loaded.name, loaded.items) == ("mmlu", ["first item", "second item"])
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"messages": [{"role": "system", "content": "sys"},
                                              {"role": "user", "content": "the prompt"}]}]))
    assert load_benchmark(f"named={chat}").items == ["the prompt"]
    assert load_benchmark(str(folder / "a.jsonl"), field="target").items == ["A"]
    with pytest.raises(UserError, match="--benchmark-field"):
        load_benchmark(str(folder / "a.jsonl"), field="missing")


def test_unreadable_or_offline_benchmarks_are_user_errors(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)
    with pytest.raises(UserError, match="cannot load it from the Hub"):
        load_benchmark("nobody/no-such-benchmark")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match=str(bad)):
        load_benchmark(str(bad))
    with pytest.raises(UserError, match="no such file or folder"):
        load_benchmark(str(tmp_path / "missing" / "x.jsonl"))


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, whether or not `datasets` was imported before (it reads the env at import)."""
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
