"""pipelines/rest_em.py end to end: the E-step with the embedded model on a tiny mixed problem set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from hub_double import HubDouble
from huggingface_hub import DatasetCard
from publish_fixtures import hub_env

from steps import REPO_ROOT
from steps.repo_folder import read_config
from steps.rest_em.scoring import OUTCOMES

_SPEC = importlib.util.spec_from_file_location("rest_em_cli", REPO_ROOT / "pipelines" / "rest_em.py")
rest_em = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(rest_em)

TOKEN = "hf_" + "r3stEmT0ken" * 3
PROBLEMS = [
    {"id": "m1", "question": "Ana has 2 apples. Ana gets 1 more apples. How many apples does "
                             "Ana have now?", "answer": "3"},
    {"id": "m2", "question": "What is 4 + 4?", "answer": "8"},
    {"id": "m3", "question": "What is 10 - 3?", "answer": "7"},
    {"id": "c1", "question": "Print the number 5.", "tests": [{"input": "", "output": "5"}]},
    {"id": "c2", "question": "Write a function double(x) that returns 2 * x.",
     "tests": "assert double(4) == 8"},
    # Longer than the engine's context: its samples are missing, counted by the engine's reason.
    {"id": "long", "question": "What is 1 + 1? " * 1200, "answer": "2"},
]


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv in (["--problems", str(tmp_path / "nope.jsonl")], ["-k", "0"],
                 ["--iterations", "2"]):
        with pytest.raises(SystemExit) as stop:
            rest_em.main([*argv, "--output-dir", str(tmp_path / "out")])
        assert stop.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and "\n" not in error


def funnel_reasons(out: Path) -> dict[tuple[str, str], int]:
    return {(r["stage"], r["reason"]): r["rows"] for r in pq.read_table(out / "funnel.parquet").to_pylist()}


@pytest.mark.model
def test_estep_writes_capped_rows_funnel_and_metrics(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    out = tmp_path / "repo"
    k, cap = 3, 1
    # A fresh process: distilabel forks its workers, and a fork of a process that already ran
    # llama.cpp (earlier tests in this session did) hangs in OpenMP. It pushes to the Hub double.
    with HubDouble(TOKEN) as hub:
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "pipelines" / "rest_em.py"), "--problems",
             str(problems), "-k", str(k), "--max-per-problem", str(cap), "--max-new-tokens", "48",
             "--heldout-fraction", "0.4", "--output-dir", str(out),
             "--push-to-hub", "someone/rest-em-tiny"],
            capture_output=True, text=True, timeout=900,
            env=hub_env(hub.url, tmp_path / "hf-home", TOKEN))
        assert done.returncode == 0, done.stderr[-3000:]
        pushed = hub.repos["someone/rest-em-tiny"].files
    card = DatasetCard.load(out / "README.md")
    assert any(c["config_name"] == "rest_em" for c in card.data.configs)
    assert "| sampler | HuggingFaceTB/SmolLM2-135M-Instruct" in card.text
    assert pushed["README.md"] == (out / "README.md").read_bytes()
    assert pushed["run.json"] == (out / "run.json").read_bytes()
    loaded = datasets.load_dataset(str(out), "rest_em", split="train",
                                   cache_dir=str(tmp_path / "cache"))

    run = json.loads((out / "run.json").read_text())
    (record,) = run["iterations"]
    counts = run["counts"]
    assert counts["samples"] == run["split"]["train"] * k
    assert sum(counts[o] for o in OUTCOMES) == counts["samples"]
    assert counts["pass"] == counts["kept"] + counts["capped"]
    heldout = record["heldout"]
    assert heldout["problems"] == run["split"]["heldout"] and f"pass@{k}" in heldout
    assert 0 <= heldout["greedy_pass@1"] <= 1 and record["samples_per_s"] > 0

    assert counts["no_output:context_overflow"] == k  # "long" is a train problem (hash split)
    assert funnel_reasons(out)[("generation", "context_overflow")] == k

    rows = read_config(out, "rest_em").to_pylist()
    assert len(rows) == counts["kept"] == run["rows"]["rest_em"] == loaded.num_rows
    assert str(tmp_path) not in json.dumps(run) and run["config"]["problems"] == "problems.jsonl"
    assert max(Counter(r["seed_id"] for r in rows).values(), default=0) <= cap
    for row in rows:
        assert row["flow"] == "rest_em" and row["messages"][-1]["role"] == "assistant"
        assert json.loads(row["generation_params"])["reward"] == 1

    funnel = funnel_reasons(out)
    removed = sum(n for (stage, _), n in funnel.items() if stage in ("verification", "cap"))
    assert funnel[("input", "rows_in")] - removed == funnel[("output", "rows_out")] == len(rows)



@pytest.mark.model
def test_estep_replicas_decode_the_same_samples_and_greedy_answers() -> None:
    """Two local replicas of each E-step LLM step (one llama.cpp process each) split the batches
    and give the texts one replica gives: every seed comes from the row, never from the replica."""
    from steps.cluster import ClusterOptions
    from steps.rest_em.estep import run_estep
    from steps.rest_em.problems import arithmetic_problems

    problems = arithmetic_problems(4, seed=3, steps=(1, 2))
    one, two = (run_estep(problems, "embedded", k=2, max_per_problem=2, seed=0, max_new_tokens=24,
                          batch_size=2, cluster=ClusterOptions(replicas=replicas))
                for replicas in (1, 2))
    assert [r.solutions for r in one.results] == [r.solutions for r in two.results]
    assert all(None not in r.solutions for r in one.results)
    assert [r.greedy for r in one.results] == [r.greedy for r in two.results]
