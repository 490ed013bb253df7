"""Supervised fine-tuning for the M-step (torch + TRL; runs in the M-step's own process).

- Prompt-completion rows (prompt = the few-shot prompt + question, completion = the solution),
  so TRL's SFTTrainer puts the loss on the solution tokens only (TRL's SFTTrainer
  documentation: prompt-completion datasets).
- float32 throughout, on CPU as on GPU: TRL turns bf16 on by default and accelerate then wraps
  `forward` in autocast, which also changed the early-stopping measurement (7 of 20 greedy texts
  changed on SmolLM2-135M). `sft_config` switches both half precisions off.
- Early stopping on validation reward: plain greedy accuracy (no sampling, no repetition penalty)
  with the same verifier as the E-step, before training and after every epoch; the best epoch
  is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from trl import SFTConfig, SFTTrainer

from steps.rest_em.gguf_export import export_llama_gguf
from steps.rest_em.mstep_types import BaseWeights, MStepResult, MStepSettings
from steps.rest_em.problems import Problem
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.scoring import SolutionScorer

F32_GGUF = "model-f32.gguf"


def load_base(base: BaseWeights) -> tuple[Any, Any]:
    """(model in float32, tokenizer); a GGUF is dequantised by transformers."""
    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(base.path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32, **kwargs)
    if base.gguf_file:
        # transformers flags a GGUF-loaded model as quantized (GgufHfQuantizer) although its
        # weights are dequantised float32 tensors, and the Trainer refuses quantized models.
        model.is_quantized, model.hf_quantizer = False, None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model, tokenizer


def greedy_texts(model: Any, tokenizer: Any, problems: list[Problem], *, max_new_tokens: int,
                 batch_size: int) -> list[str]:
    """Plain greedy solutions (no sampling, repetition penalty 1.0) to `problems`, in order."""
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    texts: list[str] = []
    with torch.no_grad():
        for start in range(0, len(problems), batch_size):
            batch = problems[start:start + batch_size]
            encoded = tokenizer.apply_chat_template(
                [solution_prompt(p) for p in batch], add_generation_prompt=True, padding=True,
                return_tensors="pt", return_dict=True).to(model.device)
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                    repetition_penalty=1.0, temperature=None, top_k=None,
                                    top_p=None, pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:],
                                            skip_special_tokens=True)
    model.train(was_training)
    return texts


def greedy_reward(model: Any, tokenizer: Any, problems: list[Problem], scorer: SolutionScorer,
                  *, max_new_tokens: int, batch_size: int) -> float:
    """Share of `problems` whose greedy solution the verifier accepts."""
    texts = greedy_texts(model, tokenizer, problems, max_new_tokens=max_new_tokens,
                         batch_size=batch_size)
    return sum(scorer(p, text).reward for p, text in zip(problems, texts, strict=True)) / len(problems)


class ValidationRewardStopping(TrainerCallback):
    """Validation reward before training and after each epoch; keep the best epoch's weights."""

    def __init__(self, measure: Callable[[Any], float], patience: int) -> None:
        """`measure`: the validation reward of a model; `patience`: epochs without a better one."""
        self.measure, self.patience = measure, patience
        self.rewards: list[float] = []  # [before training, after epoch 1, …]
        self.best_epoch, self.best_state = 0, None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        """Record the reward of the model before training (epoch 0)."""
        self.rewards.append(self.measure(model))

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        """Record this epoch's reward, keep the weights if best, stop after `patience` worse epochs."""
        reward = self.measure(model)
        self.rewards.append(reward)
        epoch = len(self.rewards) - 1
        if self.best_state is None or reward > self.rewards[self.best_epoch]:
            self.best_epoch, self.best_state = epoch, copy.deepcopy(model.state_dict())
        elif epoch - self.best_epoch >= self.patience:
            control.should_training_stop = True


def sft_config(settings: MStepSettings, output_dir: Path, seed: int) -> SFTConfig:
    """TRL settings: completion-only loss, float32 (no bf16/fp16 autocast), no checkpoints."""
    return SFTConfig(
        output_dir=str(output_dir / "trainer"), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        completion_only_loss=True, save_strategy="no", report_to=[], logging_steps=1,
        seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        bf16=False, fp16=False)


def _save(model: Any, tokenizer: Any, base: BaseWeights, output_dir: Path) -> Path:
    """The weights where an engine can load them: F32 GGUF for a GGUF base, else a folder."""
    if base.writes_gguf and base.gguf_file:
        return export_llama_gguf(model, Path(base.path) / base.gguf_file, output_dir / F32_GGUF)
    path = output_dir / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def export_base(base: BaseWeights, output_dir: Path) -> str:
    """The engine spec of the untrained base written as `train` writes fine-tuned models."""
    model, tokenizer = load_base(base)
    return base.finetuned_spec(_save(model, tokenizer, base, output_dir))


def train(base: BaseWeights, rows: list[dict[str, Any]], validation: list[Problem],
          output_dir: Path, *, seed: int, settings: MStepSettings) -> MStepResult:
    """Fine-tune the base on `rows`, keep the epoch with the best validation reward, save it."""
    started = time.perf_counter()
    model, tokenizer = load_base(base)
    dataset = Dataset.from_list([{"prompt": row["messages"][:-1],
                                  "completion": row["messages"][-1:]} for row in rows])
    scorer = SolutionScorer()
    stopping = ValidationRewardStopping(
        lambda m: greedy_reward(m, tokenizer, validation, scorer,
                                max_new_tokens=settings.eval_max_new_tokens,
                                batch_size=settings.eval_batch_size),
        settings.patience)
    trainer = SFTTrainer(model=model, args=sft_config(settings, output_dir, seed),
                         train_dataset=dataset, processing_class=tokenizer, callbacks=[stopping])
    try:
        trainer.train()
    finally:
        scorer.close()
    model.load_state_dict(stopping.best_state)
    path = _save(model, tokenizer, base, output_dir)
    return MStepResult(
        engine=base.finetuned_spec(path),
        model_id=f"{base.gguf_file or base.path} + ReST-EM M-step ({output_dir.name})",
        model_path=path, rows=len(rows), validation_rewards=stopping.rewards,
        best_epoch=stopping.best_epoch, seconds=time.perf_counter() - started,
        train_loss=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry])
