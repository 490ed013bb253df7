"""The M-step driver: fine-tune the base model in a process of its own, and export weights.

- Restart from the base model every iteration (ReST-EM, unlike ReST, never continues from p_i;
  Singh et al. 2023, section 3).
- Training itself (`steps.rest_em.sft`, torch + TRL) runs in a *spawned* process: once torch has
  started its OpenMP threads in a process, children forked from it hang in llama.cpp's own
  OpenMP (both use libgomp), and distilabel forks the next E-step's workers from this process.
  It also hands the training memory back when the step ends.
- The result goes where the next E-step can sample from it: an F32 GGUF for llama.cpp engines
  (F16 rounding erased most of a small fine-tune's changes), a transformers folder for
  vLLM. The base is exported the same way once (`export_base`), so that every iteration, the
  first included, samples from weights in the same format.

This module imports no torch; the [train] extra is checked before anything runs.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from steps.errors import UserError
from steps.rest_em.mstep_types import BaseWeights, MStepResult, MStepSettings
from steps.rest_em.problems import Problem

TRAIN_EXTRA = ("torch", "transformers", "trl", "gguf", "accelerate")


def check_train_extra() -> None:
    """Check that the packages of the [train] extra (TRAIN_EXTRA) are installed.

    Raises:
        UserError: a package of the [train] extra is missing.
    """
    missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"the M-step (fine-tuning) needs the [train] extra ({', '.join(missing)} "
                        "missing): "
                        "pip install -e '.[train]'")


def _in_child(function: str, *args: Any, **kwargs: Any) -> Any:
    from steps.rest_em import sft

    return getattr(sft, function)(*args, **kwargs)


def _spawned(function: str, *args: Any, **kwargs: Any) -> Any:
    check_train_extra()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_in_child, function, *args, **kwargs).result()


def fine_tune(base: BaseWeights, rows: list[dict[str, Any]], validation: list[Problem],
              output_dir: Path, *, seed: int = 0,
              settings: MStepSettings | None = None) -> MStepResult:
    """Fine-tune `base` on `rows` (ROW_SCHEMA, last message = the kept solution), in a child.

    `validation`: the problems whose greedy reward picks the epoch (early stopping).

    Raises:
        UserError: the [train] extra is missing, or the base cannot be written back to GGUF.
    """
    return _spawned("train", base, rows, validation, output_dir, seed=seed,
                    settings=settings or MStepSettings())


def export_base(base: BaseWeights, output_dir: Path) -> str:
    """The engine spec of the base exported as fine-tuned models are (F32 GGUF), in a child.

    A transformers base is returned as is: fine-tuned copies are written in its own format.

    Raises:
        UserError: the [train] extra is missing, or the base cannot be written back to GGUF.
    """
    if not base.writes_gguf:
        return base.engine
    return _spawned("export_base", base, output_dir)
