"""Recipes against a faulty teacher server (issue 11): nothing lost, retries counted, one final
line and exit 3 when a rerun may fix failures, a rerun completing them, preflight, estimate and
budget caps. orca3_mix and Magpie run as CLIs in fresh processes against the fault-injecting
protocol double (tests/openai_double.py) on loopback, with no latency and tiny plans.
"""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from openai_double import Faults, OpenAIDouble, free_port

from steps import REPO_ROOT, repo_folder

ORCA = REPO_ROOT / "pipelines" / "orca3_mix.py"
MAGPIE = REPO_ROOT / "pipelines" / "magpie.py"
TINY = ["--skills", "rc,mcq", "--rows", "6", "--tasks-per-item", "1", "--refinement-rounds", "1",
        "--no-curate", "--seed", "3", "--max-concurrency", "8"]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the steps of this tree in the subprocess


@pytest.fixture
def server() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(Faults()) as double:
        yield double


def orca(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    engine = f"openai:double@{url}"
    return subprocess.run([sys.executable, str(ORCA), *TINY, "--agent-llm", engine, "--teacher",
                           engine, "--output-dir", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env=ENV, check=False)


def rows(out: Path) -> pl.DataFrame:
    return pl.concat([pl.from_arrow(repo_folder.read_config(out, c)) for c in repo_folder.configs(out)
                      if c != repo_folder.FAILURES]).sort("id").select("id", "messages")


def failures(out: Path) -> pl.DataFrame:
    return pl.from_arrow(repo_folder.read_config(out, repo_folder.FAILURES))


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_faults_give_the_fault_free_rows_and_count_retries(server: OpenAIDouble,
                                                           tmp_path: Path) -> None:
    clean = orca(server.url, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    server.reset_stats()
    server.configure(fail_rate=0.2, fail_status=500, rate_limit_rate=0.05, retry_after=0.1,
                     hang_rate=0.02, hang_s=60)
    faulty = orca(server.url, tmp_path / "faulty", "--request-timeout", "1")
    assert faulty.returncode == 0, faulty.stderr[-2000:]
    assert rows(tmp_path / "faulty").equals(rows(tmp_path / "clean"))
    status = server.stats()["status"]
    assert status.get("500", 0) > 0  # (429s and hangs are drawn too: few at this size)
    run = json.loads((tmp_path / "faulty" / repo_folder.RUN_FILE).read_text())
    retried = sum(c["engine_retries"] for c in run["agent_calls"].values())
    assert retried >= status["500"] + status.get("429", 0)  # (+ hung requests timed out)


def test_every_request_failing_is_recorded_and_exits_3(server: OpenAIDouble,
                                                       tmp_path: Path) -> None:
    server.configure(fail_rate=1.0, fail_status=500)
    done = orca(server.url, tmp_path, "--request-retries", "0")
    assert done.returncode == 3, done.stderr[-2000:]
    records = failures(tmp_path)
    items = json.loads((tmp_path / repo_folder.RUN_FILE).read_text())
    assert set(records["reason"]) == {"engine_error:500"}
    assert records["item_id"].n_unique() == records.height > 0  # each item once, first stage
    assert sum(items["rows"].values()) == 0  # nothing written as if it had succeeded
    assert [c for c in repo_folder.configs(tmp_path) if c != repo_folder.FAILURES] == []
    line = last_line(done)
    assert line.startswith(f"{records.height} of {records.height} work items failed "
                           f"(engine_error:500 ×{records.height})")
    assert line.endswith("rerun the same command to retry them")


def test_server_down_at_start_is_one_line_within_10_s(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    done = orca(url, tmp_path / "out")
    assert time.monotonic() - started < 10 + 5  # (+ the interpreter's start)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "connection refused" in done.stderr
    assert done.stderr.startswith("error: --agent-llm openai:double@")
    assert not (tmp_path / "out").exists()


def test_a_rerun_completes_the_failed_items(server: OpenAIDouble, tmp_path: Path) -> None:
    clean = orca(server.url, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    server.configure(fail_rate=1.0, fail_status=503)
    assert orca(server.url, tmp_path / "out", "--request-retries", "0").returncode == 3
    server.configure(fail_rate=0.0)
    rerun = orca(server.url, tmp_path / "out", "--request-retries", "0")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rows(tmp_path / "out").equals(rows(tmp_path / "clean"))
    # only the content failures the fault-free run has too (the double's replies can miss a
    # structure check): no engine error is left
    assert sorted(failures(tmp_path / "out")["reason"]) == sorted(
        failures(tmp_path / "clean")["reason"]) and not any(
        r.startswith("engine_error") for r in failures(tmp_path / "out")["reason"])


def test_a_rerun_retries_only_the_items_that_failed(server: OpenAIDouble, tmp_path: Path) -> None:
    """All items share one batch here (--max-concurrency 8): the items that succeeded stay done,
    only those with engine errors are sent again, and the final rows equal a fault-free run's."""
    clean = orca(server.url, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    full = server.stats()["requests"]
    server.configure(fail_rate=0.1, fail_status=503)
    assert orca(server.url, tmp_path / "out", "--request-retries", "0").returncode == 3
    assert rows(tmp_path / "out").height > 0  # some items succeeded beside the failed ones
    server.configure(fail_rate=0.0)
    server.reset_stats()
    rerun = orca(server.url, tmp_path / "out", "--request-retries", "0")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done_before = int(re.search(r"\((\d+) already done\)", rerun.stdout)[1])
    assert done_before > 0 and 0 < server.stats()["requests"] < full
    assert rows(tmp_path / "out").equals(rows(tmp_path / "clean"))


def test_magpie_with_every_request_failing_records_engine_reasons(server: OpenAIDouble,
                                                                  tmp_path: Path) -> None:
    server.configure(fail_rate=1.0, fail_status=500)
    done = subprocess.run(
        [sys.executable, str(MAGPIE), "--rows", "4", "--engine", f"openai:double@{server.url}",
         "--template", "chatml", "--batch-size", "4", "--request-retries", "0",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=ENV,
        check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    records = failures(tmp_path)
    assert records.height >= 4 and set(records["reason"]) == {"engine_error:500"}
    assert server.stats()["by_endpoint"].get("/v1/completions", 0) > 0  # raw pre-query prompts
    assert "rerun the same command" in last_line(done)


def test_estimate_prints_the_table_and_generates_nothing(server: OpenAIDouble,
                                                         tmp_path: Path) -> None:
    done = orca(server.url, tmp_path / "out", "--estimate", "--price-in", "1", "--price-out", "2",
                "--throughput", "100")
    assert done.returncode == 0, done.stderr[-2000:]
    for needle in ("response_generation", "total", "cost: ~", "time: ~"):
        assert needle in done.stdout
    assert server.stats()["requests"] == 0 and not (tmp_path / "out").exists()


def test_token_cap_stops_cleanly_and_a_higher_cap_continues(server: OpenAIDouble,
                                                            tmp_path: Path) -> None:
    clean = orca(server.url, tmp_path / "clean", "--batch-size", "1", "--max-concurrency", "1")
    assert clean.returncode == 0, clean.stderr[-2000:]
    out = tmp_path / "out"
    capped = orca(server.url, out, "--batch-size", "1", "--max-concurrency", "1",
                  "--max-tokens-total", "1")
    assert capped.returncode == 3, capped.stderr[-2000:]
    line = last_line(capped)
    not_done, _, planned = line.partition(" work items not done")[0].partition(" of ")
    assert 0 < int(not_done) < int(planned)  # committed work kept, the rest left for a rerun
    assert "token budget reached" in line and "rerun with a higher cap" in line
    run = json.loads((out / repo_folder.RUN_FILE).read_text())
    assert run["tokens"]["input"] > 0
    more = orca(server.url, out, "--batch-size", "1", "--max-concurrency", "1",
                "--max-tokens-total", "100000000", "--price-in", "1")
    assert more.returncode == 0, more.stderr[-2000:]
    assert rows(out).equals(rows(tmp_path / "clean"))
    assert json.loads((out / repo_folder.RUN_FILE).read_text())["tokens"]["cost"] > 0
