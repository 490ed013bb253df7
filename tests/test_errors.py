"""A failing command prints one line and a scrubbed log: no traceback, no local variable, no secret
(distilabel's rich traceback hook with show_locals=True printed tokens held in locals)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from steps import REPO_ROOT

HF_TOKEN = "hf_PlantedTokenAbcdefghijklmnopqrstuv"
OPENAI_KEY = "sk-plantedKey0123456789abcdefXYZ"

# Code run in a fresh interpreter: distilabel is imported first so its rich hook is installed.
RAISES_WITH_SECRETS = """
import os, distilabel
from steps.errors import cli_main

@cli_main
def main():
    token = os.environ["HF_TOKEN"]  # a local variable rich would have printed
    raise RuntimeError(f"upload refused for {token} with key " + os.environ["OPENAI_API_KEY"])

main()
"""
UNCAUGHT_AFTER_DISTILABEL = """
import os
import steps.errors, distilabel
token = os.environ["HF_TOKEN"]
def fail(secret=token):
    raise KeyError(secret)
fail()
"""
USER_ERROR_WITH_PATH = """
import os
from steps.errors import UserError, cli_main

@cli_main
def main():
    raise UserError(f"--seeds: {os.getcwd()}/seeds/bad.txt is empty")

main()
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_TOKEN": HF_TOKEN,
           "OPENAI_API_KEY": OPENAI_KEY}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def _not_parquet_repo(tmp_path: Path) -> list[str]:
    repo = tmp_path / "repo"
    (repo / "data" / "rc").mkdir(parents=True)
    (repo / "data" / "rc" / "train-00000-of-00001.parquet").write_text("not parquet")
    (repo / "notes.parquet").write_text("not parquet either")
    return [str(REPO_ROOT / "pipelines" / "publish.py"), "--repo-dir", str(repo),
            "--push-to-hub", "org/name"]


@pytest.mark.parametrize(("make_args", "status", "kind"), [
    (lambda _: ["-c", RAISES_WITH_SECRETS], 1, "RuntimeError"),
    (lambda _: ["-c", UNCAUGHT_AFTER_DISTILABEL], 1, "KeyError"),
])
def test_unexpected_error_is_one_line_and_a_scrubbed_log(tmp_path, make_args, status, kind) -> None:  # type: ignore[no-untyped-def]
    done = _run(make_args(tmp_path), REPO_ROOT)
    printed = done.stdout + done.stderr
    assert done.returncode == status, printed
    assert HF_TOKEN not in printed and OPENAI_KEY not in printed
    assert "Traceback" not in printed and "locals" not in printed
    (line,) = done.stderr.strip().splitlines()
    match = re.fullmatch(rf"error: {kind}: .*; details in (\S+\.log)", line)
    assert match, line
    log = Path(match[1])
    assert not log.is_absolute()  # printed relative: no local folder layout
    text = (REPO_ROOT / log).read_text()
    assert "Traceback (most recent call last)" in text
    assert HF_TOKEN not in text and OPENAI_KEY not in text
    assert "╭" not in text and "locals" not in text  # rich's locals panel


def test_a_file_that_is_not_parquet_is_one_line_naming_it(tmp_path: Path) -> None:
    """publish.py with secrets in the environment on a folder whose config is not Parquet: the
    file is named, in one line, exit 2, and no secret is printed."""
    done = _run(_not_parquet_repo(tmp_path), REPO_ROOT)
    printed = done.stdout + done.stderr
    assert done.returncode == 2, printed
    assert HF_TOKEN not in printed and OPENAI_KEY not in printed and "Traceback" not in printed
    assert done.stderr == ("error: data/rc/train-00000-of-00001.parquet: not a Parquet file; "
                           "remove it or rerun the pipeline that wrote it\n")


def test_user_error_is_one_line_without_the_local_folder(tmp_path: Path) -> None:
    done = _run(["-c", USER_ERROR_WITH_PATH], tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: --seeds: seeds/bad.txt is empty\n"
