"""What the M-step starts from, how it trains, and what it hands back (no torch imported here).

Shared by the driver (`mstep`, in the pipeline's process) and the trainer (`sft`, in a spawned
process), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.engines import KINDS, EngineSpec
from steps.errors import UserError


@dataclass(frozen=True)
class BaseWeights:
    """The base model's weights: a GGUF file (llama.cpp engines) or a transformers folder/Hub id.

    `engine` is the spec they were named by; `finetuned_spec` names a fine-tuned copy.
    """

    engine: str
    path: str  # folder or Hub id
    gguf_file: str | None = None

    @classmethod
    def from_engine(cls, spec: str) -> BaseWeights:
        """The weights behind an engine spec.

        Raises:
            UserError: the engine kind has no local weights the M-step can fine-tune (a server).
        """
        engine = EngineSpec.parse(spec)
        if not engine.engine_kind.trainable:
            trainable = ", ".join(kind.usage for kind in KINDS.values() if kind.trainable)
            raise UserError(f"--engine {spec}: the M-step fine-tunes local weights; "
                            f"use {trainable}")
        gguf = engine.gguf_path
        return cls(spec, str(gguf.parent), gguf.name) if gguf else cls(spec, engine.model)

    @property
    def writes_gguf(self) -> bool:
        """Whether fine-tuned copies are written as GGUF (else as a transformers folder)."""
        return EngineSpec.parse(self.engine).finetuned_gguf

    def finetuned_spec(self, weights: Path) -> str:
        """The engine spec of a copy of this model at `weights` (a GGUF file, or a folder)."""
        return EngineSpec.parse(self.engine).finetuned_spec(weights)


@dataclass
class MStepSettings:
    """Fine-tuning settings; the trainer runs in float32 (on CPU as on GPU), no mixed precision."""

    epochs: int = 3  # an upper bound: early stopping usually ends sooner
    learning_rate: float = 2e-5
    batch_size: int = 8
    patience: int = 1  # epochs without a better validation reward before stopping
    eval_max_new_tokens: int = 128
    eval_batch_size: int = 16


@dataclass
class MStepResult:
    """The fine-tuned model (`engine` is the spec the next E-step samples with) and its record."""

    engine: str
    model_id: str
    model_path: Path
    rows: int
    validation_rewards: list[float]  # greedy validation reward before training, after each epoch
    best_epoch: int
    seconds: float
    train_loss: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The record for run.json and the card (JSON types, seconds rounded to 0.1)."""
        return {"model_path": str(self.model_path), "rows": self.rows,
                "validation_greedy_reward_by_epoch": self.validation_rewards,
                "best_epoch": self.best_epoch, "train_loss": self.train_loss,
                "seconds": round(self.seconds, 1)}
