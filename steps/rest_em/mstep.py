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
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
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
                        "missing): pip install -e '.[train]'")


def _in_child(function: str, *args: Any, **kwargs: Any) -> Any:
    from steps.rest_em import sft

    return getattr(sft, function)(*args, **kwargs)


class SpawnedChildTraceback(Exception):
    """The traceback text of an error raised in `in_spawned_child`'s process (the error's cause)."""


def _run_and_send(connection: Connection, function: Callable[..., Any], args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> None:
    try:
        connection.send((True, function(*args, **kwargs)))
    except Exception as error:
        trace = traceback.format_exc()
        try:
            connection.send((False, (error, trace)))
        except Exception:  # an error that does not pickle: its text still arrives
            connection.send((False, (RuntimeError(f"{type(error).__name__}: {error}"), trace)))


def in_spawned_child(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` in a fresh spawned process; returns its result or raises its error.

    `function` and its arguments must pickle (a module-level function). The child ignores SIGINT
    from its start (an ignored signal stays ignored in a new Python), so Ctrl-C, which reaches
    the whole process group, prints no traceback of a child half-way through its imports; it
    raises KeyboardInterrupt here, and the child is ended. (It writes its results whole, so
    nothing half-written is taken for finished.) Not daemonic: the child may start processes
    (the verifier's worker).

    Raises:
        Exception: the child's error, its traceback text as `__cause__` (SpawnedChildTraceback).
        RuntimeError: the child ended without a result (killed, out of memory).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(sender, function, args, kwargs),
                            name="spawned-child")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    sender.close()  # (the child holds its own end: a dead child is an EOF here)
    try:
        ok, value = receiver.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"the spawned process ended without a result (exit status "
                           f"{child.exitcode})") from None
    finally:
        child.terminate()
        child.join()
    if not ok:
        error, trace = value
        raise error from SpawnedChildTraceback(trace)
    return value


def _spawned(function: str, *args: Any, **kwargs: Any) -> Any:
    check_train_extra()
    return in_spawned_child(_in_child, function, *args, **kwargs)


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
