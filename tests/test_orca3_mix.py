"""orca3_mix end to end on the embedded model: rows, determinism, resume after a kill, errors.

Runs are tiny (one short item per skill, short generations) so that the suite stays in CI's time.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from publish_fixtures import build_repo

from steps import REPO_ROOT, repo_folder
from steps.agentinstruct.checkpoint import CHECKPOINT_SCHEMA, ITEM, Checkpoints
from steps.publish import write_card
from steps.rows import FAILURE_SCHEMA, ROW_SCHEMA, to_table

SCRIPT = REPO_ROOT / "pipelines" / "orca3_mix.py"
TINY = ["--skills", "text_classification,tool_use", "--rows", "4", "--tasks-per-item", "1",
        "--refinement-rounds", "1", "--agent-max-tokens", "200", "--teacher-max-tokens", "40",
        "--batch-size", "1", "--seed", "7"]


def run(out: Path, *extra: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *TINY, "--output-dir", str(out), *extra],
                          capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]


def rows(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(repo_folder.config_file(out, c))
                      for c in repo_folder.configs(out) if c != "failures"]).sort("id")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    done = run(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_rows_have_messages_and_provenance(reference: Path) -> None:
    table = rows(reference)
    assert table.height > 0 and set(table.columns) == set(ROW_SCHEMA.names)
    assert set(repo_folder.configs(reference)) - {"failures"} <= {"text_classification", "tool_use"}
    for row in table.iter_rows(named=True):
        roles = [m["role"] for m in row["messages"]]
        assert roles[-1] == "assistant" and "user" in roles and row["messages"][-1]["content"]
        assert row["flow"] == "agentinstruct" and row["seed_id"] and row["subcategory"]
        assert row["refinement_round"] in (0, 1) and row["agent_model"].startswith("HuggingFaceTB")
        assert json.loads(row["generation_params"])["agent"]["engine"] == "embedded"
    tool_rows = table.filter(pl.col("skill") == "tool_use")
    assert all(r["messages"][0]["role"] == "system" for r in tool_rows.iter_rows(named=True))
    record = json.loads((reference / "run.json").read_text())
    funnel = pl.read_parquet(reference / "funnel.parquet")
    rows_in = dict(funnel.filter(pl.col("reason") == "rows_in").select("config", "rows").rows())
    rows_out = dict(funnel.filter(pl.col("reason") == "rows_out").select("config", "rows").rows())
    assert rows_in == record["generated"]  # generated, before curation
    assert rows_out == dict(table.group_by("config").len().rows()) == record["rows"]  # the folder
    assert record["tokens"]["output"] > 0 and record["packages"]["distilabel"] == "1.5.3"
    assert record["engines"]["teacher"]["model_id"].startswith("HuggingFaceTB/SmolLM2-135M")
    assert record["seeds"]["source"] == "seeds/sample"  # relative to the repository
    assert DatasetCard.load(reference / "README.md").data.pretty_name


def test_same_seed_same_rows(reference: Path, tmp_path: Path) -> None:
    assert run(tmp_path).returncode == 0
    assert rows(tmp_path).equals(rows(reference))


def test_killed_run_resumes_to_the_same_rows(reference: Path, tmp_path: Path) -> None:
    """Kill the whole process tree once the first batch is committed, then rerun."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *TINY, "--output-dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not list(tmp_path.glob(".work/*/batches/*.done.json")):
        assert proc.poll() is None and time.time() < deadline, "run ended before the first batch"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already done" in resumed.stdout and "(0 already done)" not in resumed.stdout
    again = rows(tmp_path)
    assert again["id"].is_unique().all()
    assert again.equals(rows(reference))


def test_failures_table_records_agent_raw_output_and_reason(tmp_path: Path) -> None:
    """Too few tokens for any JSON list to close: every seed-instruction call fails, is retried,
    and lands in the failures config and the funnel, not silently nowhere. A content failure is
    final (a rerun gives the same reply), so the run says so in its last line and exits 0."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--skills", "fermi", "--rows", "1", "--tasks-per-item", "1",
         "--refinement-rounds", "0", "--agent-max-tokens", "6", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("1 of 1 work items failed (") and last.endswith(
        "a rerun would give the same result: see the failures config")
    assert (tmp_path / "README.md").is_file()  # what was made (failures) is carded
    failures = pl.read_parquet(repo_folder.config_file(tmp_path, "failures"))
    assert set(failures.columns) == set(FAILURE_SCHEMA.names) and failures.height >= 1
    assert set(failures["reason"]) <= {"invalid_json", "schema_mismatch", "empty_output"}
    assert failures["agent"].str.len_chars().min() > 0
    assert set(failures["stage"]) <= {"content_transformation", "seed_instruction_generation"}
    cut_json = failures.filter(pl.col("reason") == "invalid_json")
    assert cut_json["raw_output"].str.starts_with("{").all()
    assert "fermi" not in repo_folder.configs(tmp_path)  # no row made it
    calls = json.loads((tmp_path / "run.json").read_text())["agent_calls"]
    assert sum(c["failures"] for c in calls.values()) == failures.height
    assert all(c["retries"] >= 2 * c["failures"] for c in calls.values())  # 2 retries per failure
    funnel = pl.read_parquet(tmp_path / "funnel.parquet")
    assert funnel.filter(pl.col("stage") == "generation")["rows"].sum() >= failures.height


@pytest.mark.parametrize(("args", "needle"), [
    (["--skills", "juggling"], "--skills: unknown skill 'juggling'"),
    (["--mix", "rc=lots"], "--mix rc: Input should be a valid number"),
    (["--mix", "rc=nan"], "--mix rc: Input should be a finite number"),
    (["--teacher-temperature", "inf"], "--teacher-temperature: Input should be a finite number"),
    (["--benchmarks", "evals/missing.jsonl"], "evals/missing.jsonl"),
    (["--push-to-hub", "no-namespace"], "--push-to-hub 'no-namespace'"),
    (["--agent-llm", "gpt4"], "engine 'gpt4' not understood"),
    (["--seeds", "/no/such/folder"], "--seeds: /no/such/folder"),
])
def test_bad_options_are_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and needle in done.stderr


def test_bad_option_leaves_an_earlier_run_untouched(tmp_path: Path) -> None:
    """Options are checked before any work: a missing benchmark file into a folder holding an
    earlier run changes nothing there (data, run.json and card stay in step)."""
    build_repo(tmp_path)
    write_card(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--benchmarks", "missing.jsonl",
                           "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing.jsonl" in done.stderr.strip().splitlines()[-1]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_rerun_retries_exactly_the_items_that_failed(tmp_path: Path) -> None:
    """An item with a failure a rerun may fix (an engine error) is un-committed on rerun, so it is
    redone; the other items of its batch stay done with their rows, and items with content
    failures only (final outcomes) stay done."""
    batches = (("ok", ["a"], []), ("bad", ["b", "c"], [("c", "engine_error:503")]),
               ("parsed", ["d"], [("d", "invalid_json")]))
    for batch, items, failed in batches:
        rows = [{"id": f"{i}-row", "messages": [], ITEM: i, "config": "s", "quota": 9} for i in items]
        pq.write_table(to_table(rows, CHECKPOINT_SCHEMA), tmp_path / f"{batch}.rows.parquet")
        pq.write_table(to_table([{"item_id": i, "reason": r} for i, r in failed],
                                FAILURE_SCHEMA), tmp_path / f"{batch}.failures.parquet")
        (tmp_path / f"{batch}.done.json").write_text(json.dumps(
            {"items": items, "calls": {}, "tokens": {"input": 5, "output": 5}}))
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.done == {"a", "b", "c", "d"}
    assert checkpoints.discard_failed() == 1
    assert checkpoints.done == {"a", "b", "d"} and not list(tmp_path.glob("bad.*"))
    assert sorted(checkpoints._read(".rows.parquet", CHECKPOINT_SCHEMA)["id"]) == [
        "a-row", "b-row", "d-row"]
    assert checkpoints.tokens == {"input": 15, "output": 15}  # what was spent stays counted
    assert Checkpoints(tmp_path).discard_failed() == 0  # nothing left to retry


def test_a_folder_genteach_did_not_write_is_refused(tmp_path: Path) -> None:
    """The card replaces README.md and a push uploads the whole folder: a user's own project
    folder as --output-dir is one line, and nothing in it changes."""
    (tmp_path / "README.md").write_text("# My project notes\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "holds files genteach did not write" in done.stderr
    assert (tmp_path / "README.md").read_text() == "# My project notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "src"]
