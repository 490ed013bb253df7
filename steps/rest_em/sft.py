"""Supervised fine-tuning for the M-step (torch + TRL; runs in the M-step's own process).

- Prompt-completion rows (prompt = the few-shot prompt + question, completion = the solution),
  so TRL's SFTTrainer puts the loss on the solution tokens only.
- Early stopping on held-out reward: greedy accuracy on the held-out problems, with the same
  verifier as the E-step, before training and after every epoch; the best epoch is kept.
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
from steps.rest_em.mstep import BaseModel, MStepResult, MStepSettings
from steps.rest_em.problems import Problem
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.scoring import SolutionScorer


def load_base(base: BaseModel) -> tuple[Any, Any]:
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


def greedy_reward(model: Any, tokenizer: Any, problems: list[Problem], scorer: SolutionScorer,
                  *, max_new_tokens: int, batch_size: int) -> float:
    """Share of `problems` whose greedy solution the verifier accepts."""
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(problems), batch_size):
            batch = problems[start:start + batch_size]
            encoded = tokenizer.apply_chat_template(
                [solution_prompt(p) for p in batch], add_generation_prompt=True, padding=True,
                return_tensors="pt", return_dict=True)
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:],
                                           skip_special_tokens=True)
            correct += sum(scorer(p, text).reward for p, text in zip(batch, texts, strict=True))
    model.train(was_training)
    return correct / len(problems)


class HeldoutRewardStopping(TrainerCallback):
    """Held-out reward before training and after each epoch; keep the best epoch's weights."""

    def __init__(self, measure: Callable[[Any], float], patience: int) -> None:
        self.measure, self.patience = measure, patience
        self.rewards: list[float] = []  # [before training, after epoch 1, …]
        self.best_epoch, self.best_state = 0, None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        self.rewards.append(self.measure(model))

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        reward = self.measure(model)
        self.rewards.append(reward)
        epoch = len(self.rewards) - 1
        if self.best_state is None or reward > self.rewards[self.best_epoch]:
            self.best_epoch, self.best_state = epoch, copy.deepcopy(model.state_dict())
        elif epoch - self.best_epoch >= self.patience:
            control.should_training_stop = True


def train(base: BaseModel, rows: list[dict[str, Any]], heldout: list[Problem], output_dir: Path,
          *, seed: int, settings: MStepSettings) -> MStepResult:
    started = time.perf_counter()
    model, tokenizer = load_base(base)
    dataset = Dataset.from_list([{"prompt": row["messages"][:-1],
                                  "completion": row["messages"][-1:]} for row in rows])
    scorer = SolutionScorer()
    stopping = HeldoutRewardStopping(
        lambda m: greedy_reward(m, tokenizer, heldout, scorer,
                                max_new_tokens=settings.eval_max_new_tokens,
                                batch_size=settings.eval_batch_size),
        settings.patience)
    config = SFTConfig(
        output_dir=str(output_dir / "trainer"), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        completion_only_loss=True, save_strategy="no", report_to=[], logging_steps=1,
        seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[stopping])
    try:
        trainer.train()
    finally:
        scorer.close()
    model.load_state_dict(stopping.best_state)
    if base.gguf_file:
        path = export_llama_gguf(model, Path(base.path) / base.gguf_file,
                                 output_dir / "model-f16.gguf")
        engine = f"llamacpp:{path}"
    else:
        path = output_dir / "model"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        engine = f"vllm:{path}"
    return MStepResult(
        engine=engine,
        model_id=f"{base.gguf_file or base.path} + ReST-EM M-step ({output_dir.name})",
        model_path=path, rows=len(rows), heldout_rewards=stopping.rewards,
        best_epoch=stopping.best_epoch, seconds=time.perf_counter() - started,
        train_loss=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry])
