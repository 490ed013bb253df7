"""ReST-EM and Magpie at server scale (issue 11): one limit of requests in flight per server for
the whole run, `--estimate` without generating, and a token cap that stops ReST-EM and Magpie
cleanly (Magpie's rerun with a higher cap then makes only the rest).

The recipes run as CLIs in fresh processes against the protocol double (tests/openai_double.py)
on loopback, with a small latency so that requests overlap; plans are tiny.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_double import Faults, OpenAIDouble

from steps import REPO_ROOT, repo_folder
from steps.estimate import DEFAULT_RATIOS, observed

REST_EM = REPO_ROOT / "pipelines" / "rest_em.py"
MAGPIE = REPO_ROOT / "pipelines" / "magpie.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the steps of this tree in the subprocess


@pytest.fixture
def server() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(Faults(latency=0.2)) as double:
        yield double


def run(script: Path, url: str, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), "--engine", f"openai:double@{url}",
                           "--output-dir", str(out), *options],
                          capture_output=True, text=True, timeout=300, env=ENV, check=False)


def rest_em(url: str, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run(REST_EM, url, out, "--max-new-tokens", "16", "--seed", "1", *options)


def test_rest_em_estimate_prints_the_stages_and_sends_nothing(server: OpenAIDouble,
                                                              tmp_path: Path) -> None:
    done = rest_em(server.url, tmp_path / "out", "--count", "10", "-k", "4", "--estimate",
                   "--price-in", "1", "--price-out", "2", "--throughput", "100")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert lines["e_step_samples"][2] == "40" and lines["e_step_greedy"][2] == "10"  # k + 1 each
    assert lines["e_step_samples"][4] == f"{40 * 16:,}"  # output: max_new_tokens × ratio 1.0
    assert "cost: ~" in done.stdout and "time: ~" in done.stdout
    assert server.stats()["requests"] == 0 and not (tmp_path / "out").exists()


def test_rest_em_keeps_max_concurrency_across_both_branches(server: OpenAIDouble,
                                                            tmp_path: Path) -> None:
    done = rest_em(server.url, tmp_path, "--count", "6", "-k", "2", "--max-concurrency", "3")
    # (the double's replies solve nothing, so no row is kept: exit 3 "no rows were made")
    run_json = json.loads((tmp_path / repo_folder.RUN_FILE).read_text())
    stats = server.stats()
    assert stats["peak_in_flight"] == 3, done.stderr[-2000:]  # never more, and reached
    assert stats["requests"] == run_json["iterations"][0]["generations"] == 6 * (2 + 1)
    assert run_json["tokens"] == {"input": stats["prompt_tokens"],
                                  "output": stats["completion_tokens"]}


def test_magpie_steps_share_one_limit(server: OpenAIDouble, tmp_path: Path) -> None:
    # batches of 3: instructions of a batch overlap the responses of the one before (two step
    # processes), so only a limit they share keeps the server at 3
    done = run(MAGPIE, server.url, tmp_path, "--rows", "12", "--template", "chatml",
               "--batch-size", "3", "--max-concurrency", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    stats = server.stats()
    assert stats["peak_in_flight"] == 3 and stats["requests"] == 24


def test_capped_rest_em_stops_with_one_line_and_exit_3(server: OpenAIDouble,
                                                       tmp_path: Path) -> None:
    done = rest_em(server.url, tmp_path, "--count", "30", "-k", "1", "--max-concurrency", "3",
                   "--max-tokens-total", "1")
    assert done.returncode == 3, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    not_done = int(line.split(" of ")[0])
    assert 0 < not_done < 30  # batches of 8 problems: what was fed before the cap is sampled
    assert line.startswith(f"{not_done} of 30 problems of E-step 0 not sampled: token budget "
                           "reached: ")
    assert line.endswith("ReST-EM keeps no checkpoints: a rerun (with a higher cap) starts over")
    run_json = json.loads((tmp_path / repo_folder.RUN_FILE).read_text())
    assert run_json["not_done"]["problems"] == not_done
    assert server.stats()["requests"] == 2 * (30 - not_done)  # 1 sample + 1 greedy each


def test_rest_em_estimate_scales_to_what_the_last_run_generated(tmp_path: Path) -> None:
    (tmp_path / repo_folder.RUN_FILE).write_text(json.dumps({
        "config": {"max_new_tokens": 100}, "iterations": [{"generations": 10}],
        "tokens": {"input": 5000, "output": 250}, "wall_time_s": 5.0}))
    seen = observed(tmp_path)
    assert seen.output_scale == 250 / (10 * 100 * DEFAULT_RATIOS.answer)
    assert seen.throughput == 50.0


def magpie_rows(out: Path) -> list[dict]:
    return repo_folder.read_config(out, "magpie").select(["id", "messages"]).to_pylist()


def test_capped_magpie_stops_and_a_rerun_with_a_higher_cap_ends_with_the_uncapped_rows(
        server: OpenAIDouble, tmp_path: Path) -> None:
    options = ("--rows", "12", "--template", "chatml", "--batch-size", "2", "--max-concurrency",
               "2")
    capped = run(MAGPIE, server.url, tmp_path / "capped", *options, "--max-tokens-total", "1")
    assert capped.returncode == 3, capped.stderr[-2000:]
    line = capped.stderr.strip().splitlines()[-1]
    not_done = int(line.split(" of ")[0])
    assert 0 < not_done < 12  # batches of 2: what was fed before the cap is made
    assert line.startswith(f"{not_done} of 12 conversations not made: token budget reached: ")
    assert line.endswith("of --max-tokens-total 1; rerun with a higher cap to continue")
    made = magpie_rows(tmp_path / "capped")
    assert len(made) == 12 - not_done and server.stats()["requests"] == 2 * len(made)
    run_json = json.loads((tmp_path / "capped" / repo_folder.RUN_FILE).read_text())
    assert run_json["not_done"]["conversations"] == not_done
    assert run_json["tokens"]["input"] > 0
    server.reset_stats()
    rerun = run(MAGPIE, server.url, tmp_path / "capped", *options, "--max-tokens-total", "10000000")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert server.stats()["requests"] == 2 * not_done  # only the missing conversations
    full = run(MAGPIE, server.url, tmp_path / "full", *options)
    assert full.returncode == 0, full.stderr[-2000:]
    assert magpie_rows(tmp_path / "capped") == magpie_rows(tmp_path / "full")
    assert "not_done" not in json.loads((tmp_path / "capped" / repo_folder.RUN_FILE).read_text())


def test_a_cap_passed_by_work_already_under_way_is_said(server: OpenAIDouble, tmp_path: Path) -> None:
    """One batch holds every conversation, so the cap cannot stop anything: the run completes
    (exit 0) and its last line says it passed the cap, and why."""
    done = run(MAGPIE, server.url, tmp_path / "out", "--rows", "4", "--template", "chatml",
               "--max-tokens-total", "10")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "all work items were done, but the run passed its cap (token budget reached: ")
