"""What a resumable ReST-EM run keeps on disk, so that rerunning its command skips what is done.

    OUTPUT_DIR/settings.json                  the run's settings; a run with others is refused
    OUTPUT_DIR/estep-I/chunk-CCC.jsonl        one finished E-step chunk: a header line with its
                                              seconds, then one `ProblemResult` per line
    MODEL_FOLDER/mstep.json                   a finished M-step: its engine spec and summary
    OUTPUT_DIR/models/base/export.json        the base's export: its engine spec

Every file is written whole (a temporary file renamed into place), so a killed run leaves either
the finished piece or nothing: it loses at most the piece in flight.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.rest_em.estep import ProblemResult
from steps.rest_em.mstep_types import MStepResult
from steps.rest_em.problems import Problem
from steps.rest_em.scoring import Scored

SETTINGS_FILE = "settings.json"
MSTEP_FILE = "mstep.json"
EXPORT_FILE = "export.json"


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a reader (or a rerun) sees all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def claim_output_dir(output_dir: Path, settings: dict[str, Any]) -> int:
    """Record `settings` in `output_dir`, or check they are the ones recorded there.

    Returns:
        How many finished pieces (E-step chunks, exports, fine-tunes) the folder holds for this
        run; 0 for a new run.

    Raises:
        UserError: `output_dir` is a file, cannot be created, holds files of something else (no
            settings.json), holds an unreadable settings.json, or holds a run with other settings
            (the message names each differing option with both values). Checked before any work.
    """
    path = output_dir / SETTINGS_FILE
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir} is a file; give a folder")
    if not path.is_file():
        if output_dir.is_dir() and any(output_dir.iterdir()):
            raise UserError(f"--output-dir {output_dir} holds files of something else (no "
                            f"{SETTINGS_FILE}); give a new or empty folder")
        try:
            write_whole(path, json.dumps(settings, indent=2, sort_keys=True))
        except OSError as error:
            raise UserError(f"--output-dir {output_dir}: cannot write there ({error.strerror}); "
                            "give a folder you can write") from None
        return 0
    try:
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict):
            raise ValueError(path)
    except (OSError, ValueError):
        raise UserError(f"--output-dir {output_dir}: its {SETTINGS_FILE} is unreadable; give "
                        "another folder (or delete this one)") from None
    if recorded != settings:
        differ = "; ".join(f"{_option(name)} {recorded.get(name, 'unset')} there, "
                           f"{settings.get(name, 'unset')} here"
                           for name in sorted(set(recorded) | set(settings))
                           if recorded.get(name) != settings.get(name))
        raise UserError(f"--output-dir {output_dir} holds a run with other settings ({differ}); "
                        "give those options or another folder")
    return sum(1 for _ in output_dir.glob("estep-*/chunk-*.jsonl")) + sum(
        1 for name in (EXPORT_FILE, MSTEP_FILE) for _ in output_dir.glob(f"models/*/{name}"))


def _option(name: str) -> str:
    """The command-line spelling of settings key `name` (`max_per_problem` -> --max-per-problem)."""
    return f"-{name}" if len(name) == 1 else f"--{name.replace('_', '-')}"


def _scored(data: dict[str, Any]) -> Scored:
    return Scored(data["outcome"], data["extracted"], data["detail"])


def result_to_json(result: ProblemResult) -> dict[str, Any]:
    """A `ProblemResult` as JSON types (its problem, texts, scores, kept indices, tokens)."""
    return dataclasses.asdict(result)


def result_from_json(data: dict[str, Any]) -> ProblemResult:
    """The `ProblemResult` of `result_to_json`."""
    return ProblemResult(problem=Problem(**data["problem"]), solutions=data["solutions"],
                         scored=[_scored(s) for s in data["scored"]], kept=data["kept"],
                         greedy=_scored(data["greedy"]), output_tokens=data["output_tokens"])


def rowless(result: ProblemResult) -> bool:
    """Whether the E-step pipeline returned no row for this problem (sampled or greedy branch).

    `run_estep` fills such a problem with `Scored("no_output")` without a detail; an engine
    failure always carries its reason as detail. distilabel returns rows missing only when its
    pipeline was stopped (the first Ctrl-C stops it gracefully and `run` returns what it has).
    """
    bare = Scored("no_output")
    return result.greedy == bare or (bool(result.scored) and all(s == bare for s in result.scored))


class EStepStore:
    """The finished chunks of one E-step iteration, under `folder` (e.g. OUTPUT_DIR/estep-0)."""

    def __init__(self, folder: Path) -> None:
        """Chunks live in `folder` (created on the first save)."""
        self.folder = folder

    def _path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:03d}.jsonl"

    def load(self, index: int) -> tuple[list[ProblemResult], float] | None:
        """Chunk `index`'s results and seconds, or None when it is not finished."""
        path = self._path(index)
        if not path.is_file():
            return None
        header, *lines = path.read_text().splitlines()
        return [result_from_json(json.loads(line)) for line in lines], json.loads(header)["seconds"]

    def save(self, index: int, results: list[ProblemResult], seconds: float) -> None:
        """Keep chunk `index`: its results (in order) and the seconds it took."""
        lines = [json.dumps({"seconds": seconds, "problems": len(results)})]
        lines += [json.dumps(result_to_json(r)) for r in results]
        write_whole(self._path(index), "\n".join(lines) + "\n")


def save_mstep(folder: Path, result: MStepResult) -> None:
    """Keep a finished M-step next to its model: the engine spec, model id and summary."""
    record = {"engine": result.engine, "model_id": result.model_id, **result.summary()}
    write_whole(folder / MSTEP_FILE, json.dumps(record, indent=2))


def load_mstep(folder: Path) -> MStepResult | None:
    """The M-step kept in `folder`, or None when it is not finished or its model is gone."""
    path = folder / MSTEP_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if not (Path(record["model_path"]).exists() and _usable(record["engine"])):
        return None
    return MStepResult(engine=record["engine"], model_id=record["model_id"],
                       model_path=Path(record["model_path"]), rows=record["rows"],
                       validation_rewards=record["validation_greedy_reward_by_epoch"],
                       best_epoch=record["best_epoch"], seconds=record["seconds"],
                       train_loss=record["train_loss"])


def _usable(engine: str) -> bool:
    """Whether the engine spec still parses (a GGUF spec's file exists)."""
    try:
        EngineSpec.parse(engine)
    except UserError:
        return False
    return True


def save_export(folder: Path, engine: str) -> None:
    """Keep the engine spec of the base's export made in `folder`."""
    write_whole(folder / EXPORT_FILE, json.dumps({"engine": engine}))


def load_export(folder: Path) -> str | None:
    """The engine spec of the base's export kept in `folder`, or None (not made, or gone)."""
    path = folder / EXPORT_FILE
    if not path.is_file():
        return None
    engine = json.loads(path.read_text())["engine"]
    return engine if _usable(engine) else None
