"""The M-step driver: what to fine-tune, with which settings, run in a process of its own.

- Restart from the base model every iteration (ReST-EM, unlike ReST, never continues from p_i).
- Training itself (`steps.rest_em.sft`, torch + TRL) runs in a *spawned* process: once torch has
  started its OpenMP threads in a process, children forked from it hang in llama.cpp's own
  OpenMP (both use libgomp), and distilabel forks the next E-step's workers from this process.
  It also hands the training memory back when the step ends.
- The result goes where the next E-step can sample from it: an F16 GGUF for llama.cpp engines,
  a transformers folder for vLLM.

This module imports no torch; the [train] extra is checked before anything runs.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.rest_em.problems import Problem

TRAIN_EXTRA = ("torch", "transformers", "trl", "gguf", "accelerate")


def check_train_extra() -> None:
    missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"--train needs the [train] extra ({', '.join(missing)} missing): "
                        "pip install -e '.[train]'")


@dataclass(frozen=True)
class BaseModel:
    """Where the base model's weights are: a GGUF file (llama.cpp engines) or a HF folder/id."""

    path: str  # folder or Hub id
    gguf_file: str | None = None

    @classmethod
    def from_engine(cls, spec: str) -> BaseModel:
        engine = EngineSpec.parse(spec)
        if engine.kind in ("embedded", "llamacpp"):
            return cls(str(Path(engine.model).parent), Path(engine.model).name)
        if engine.kind == "vllm":
            return cls(engine.model)
        raise UserError(f"--train with --engine {spec}: the M-step fine-tunes local weights; use "
                        "embedded, llamacpp:PATH.gguf or vllm:MODEL")


@dataclass
class MStepSettings:
    epochs: int = 3  # an upper bound: early stopping usually ends sooner
    learning_rate: float = 2e-5
    batch_size: int = 8
    patience: int = 1  # epochs without a better held-out reward before stopping
    eval_max_new_tokens: int = 128
    eval_batch_size: int = 16


@dataclass
class MStepResult:
    engine: str  # the spec the next E-step samples with
    model_id: str
    model_path: Path
    rows: int
    heldout_rewards: list[float]  # greedy held-out reward before training, after each epoch
    best_epoch: int
    seconds: float
    train_loss: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"model_path": str(self.model_path), "rows": self.rows,
                "heldout_greedy_reward_by_epoch": self.heldout_rewards,
                "best_epoch": self.best_epoch, "train_loss": self.train_loss,
                "seconds": round(self.seconds, 1)}


def _train(*args: Any, **kwargs: Any) -> MStepResult:
    from steps.rest_em.sft import train

    return train(*args, **kwargs)


def fine_tune(base: BaseModel, rows: list[dict[str, Any]], heldout: list[Problem],
              output_dir: Path, *, seed: int = 0,
              settings: MStepSettings | None = None) -> MStepResult:
    """Fine-tune `base` on `rows` (ROW_SCHEMA, last message = the kept solution), in a child."""
    check_train_extra()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_train, base, rows, heldout, output_dir, seed=seed,
                           settings=settings or MStepSettings()).result()
