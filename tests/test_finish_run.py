"""How a run ends: the summary lines a user reads (counts in plain English)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from publish_fixtures import FAILED, build_repo

from steps import REPO_ROOT, repo_folder
from steps.finish_run import counted, failure_line, finish_run
from steps.recipe_config import RecipeConfig
from steps.run_record import RunRecord


@pytest.mark.parametrize(("count", "noun", "text"), [
    (0, "row", "0 rows"), (1, "config", "1 config"), (2, "config", "2 configs"),
    (1, "failure record", "1 failure record"), (1200, "work item", "1200 work items"),
])
def test_counted(count: int, noun: str, text: str) -> None:
    assert counted(count, noun) == text


def test_the_last_line_counts_one_config_as_one(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """It said "wrote 5 rows in 1 configs and 1 failure records"."""
    folder = tmp_path / "repo"
    build_repo(folder)
    for config in ("code_", "mcq", "magpie"):
        shutil.rmtree(folder / repo_folder.DATA_DIR / config)
    (folder / repo_folder.FUNNEL_FILE).unlink()
    finish_run(RecipeConfig(output_dir=folder),
               RunRecord(run_id="run-test", flows=["agentinstruct"], config={}, failures=1))
    assert capsys.readouterr().out.startswith("wrote 5 rows in 1 config and 1 failure record to ")


def test_failure_line_agrees_with_its_count(tmp_path: Path) -> None:
    build_repo(tmp_path)
    line, retryable = failure_line(tmp_path, "run-test")
    assert line.startswith(f"{len(FAILED)} work items failed (") and not retryable
    assert failure_line(tmp_path, "run-test", work_items=40)[0].startswith(
        f"{len(FAILED)} of 40 work items failed (")
    one = repo_folder.read_config(tmp_path, repo_folder.FAILURES).slice(0, 1)
    repo_folder.write_config(tmp_path, repo_folder.FAILURES, one)
    assert failure_line(tmp_path, "run-test")[0].startswith("1 work item failed (")


@pytest.mark.parametrize(("script", "required"), [("orca3_mix", []), ("magpie", ["--rows", "2"]),
                                                  ("rest_em", [])])
def test_an_output_dir_that_is_a_file_is_one_line(tmp_path: Path, script: str,
                                                  required: list[str]) -> None:
    target = tmp_path / "afile.txt"
    target.write_text("mine\n")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "pipelines" / f"{script}.py"),
                           *required, "--output-dir", str(target)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: --output-dir afile.txt is a file, not a folder; choose a new or empty folder "
        "(nothing was done)"]
    assert target.read_text() == "mine\n"
