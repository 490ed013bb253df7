"""ReST-EM M-step: float32 training, lossless F32 GGUF export, and trainer/llama.cpp agreement.

Needs the [train] extra (torch, transformers, trl, gguf, accelerate); skipped without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

MISSING = [name for name in ("torch", "transformers", "trl", "gguf", "accelerate")
           if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING),
                                reason=f"[train] extra not installed ({', '.join(MISSING)})")


def test_permutation_for_llama_cpp_inverts_transformers_unpermute() -> None:
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from steps.rest_em.gguf_export import permute_for_llama_cpp

    weights = np.arange(12 * 4, dtype=np.float32).reshape(12, 4)
    unpermute = LlamaTensorProcessor({"num_attention_heads": 3, "num_key_value_heads": 3})
    loaded = unpermute.process(permute_for_llama_cpp(weights, 3, 3), "blk.0.attn_q.weight").weights
    assert np.array_equal(loaded, weights)


def test_the_trainer_runs_in_float32_without_autocast(tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import SFTTrainer

    from steps.rest_em.mstep_types import MStepSettings
    from steps.rest_em.sft import sft_config

    config = sft_config(MStepSettings(epochs=1, batch_size=1), tmp_path, seed=0)
    assert config.bf16 is False and config.fp16 is False
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2))
    words = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[PAD]": 2, "[EOS]": 3}, "a"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", eos_token="[EOS]")
    seen: list[tuple[bool, torch.dtype]] = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda module, args, output: seen.append(
        (torch.is_autocast_enabled("cpu"), output.dtype)))
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"prompt": "a b", "completion": " b a"}]))
    trainer.train()
    assert trainer.accelerator.mixed_precision == "no"
    assert seen and set(seen) == {(False, torch.float32)}  # every forward: no autocast, float32


@pytest.fixture(scope="module")
def base_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """(transformers base model, tokenizer, the base exported as an F32 GGUF)."""
    from steps.engines import embedded_gguf
    from steps.rest_em.mstep_types import BaseWeights
    from steps.rest_em.sft import export_base, load_base

    base = BaseWeights.from_engine("embedded")
    assert base.gguf_file == embedded_gguf().name
    spec = export_base(base, tmp_path_factory.mktemp("base"))
    model, tokenizer = load_base(base)
    return model, tokenizer, Path(spec.removeprefix("llamacpp:"))


@pytest.mark.model
def test_the_f32_export_keeps_every_weight_exactly(base_export: tuple[Any, Any, Path]) -> None:
    import torch

    from steps.rest_em.mstep_types import BaseWeights
    from steps.rest_em.sft import load_base

    model, _, path = base_export
    reloaded, _ = load_base(BaseWeights(f"llamacpp:{path}", str(path.parent), path.name))
    original = model.state_dict()
    assert all(torch.equal(weight, original[name]) for name, weight in reloaded.state_dict().items())


@pytest.mark.model
def test_trainer_and_llama_cpp_greedy_answers_agree_on_the_base(
        base_export: tuple[Any, Any, Path]) -> None:
    """The M-step's own measurement (transformers, float32) and the E-step's (llama.cpp on the
    F32 export, plain greedy) see the same model: the same final answers on the same problems."""
    from llama_cpp import Llama

    from steps.rest_em.answers import extract_final_answer
    from steps.rest_em.estep import GREEDY
    from steps.rest_em.problems import arithmetic_problems
    from steps.rest_em.prompts import solution_prompt
    from steps.rest_em.sft import greedy_texts

    model, tokenizer, path = base_export
    problems = arithmetic_problems(6, seed=5, steps=(2, 3))
    trainer_texts = greedy_texts(model, tokenizer, problems, max_new_tokens=64, batch_size=1)
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=2, verbose=False, seed=0)
    llama_texts = [llm.create_chat_completion(messages=solution_prompt(p), max_tokens=64, top_k=40,
                                              **GREEDY)["choices"][0]["message"]["content"]
                   for p in problems]
    llm.close()
    assert [extract_final_answer(t) for t in trainer_texts] == [
        extract_final_answer(t) for t in llama_texts]
    same = sum(a.strip() == b.strip() for a, b in zip(trainer_texts, llama_texts, strict=True))
    assert same >= len(problems) - 1, list(zip(trainer_texts, llama_texts, strict=True))


@pytest.mark.model
def test_fine_tune_trains_the_base_and_exports_a_loadable_gguf(tmp_path: Path) -> None:
    import torch
    from llama_cpp import Llama

    from steps.rest_em.mstep import fine_tune
    from steps.rest_em.mstep_types import BaseWeights, MStepSettings
    from steps.rest_em.problems import arithmetic_problems
    from steps.rest_em.prompts import solution_prompt
    from steps.rest_em.sft import load_base

    problems = arithmetic_problems(4, seed=0)
    rows = [{"messages": [*solution_prompt(p), {"role": "assistant",
                                                "content": f"Answer: {p.answer}"}]}
            for p in problems[:2]]
    base = BaseWeights.from_engine("embedded")
    settings = MStepSettings(epochs=1, learning_rate=1e-3, batch_size=1, eval_max_new_tokens=8,
                             eval_batch_size=2)
    result = fine_tune(base, rows, problems[2:], tmp_path, settings=settings)

    assert result.engine == f"llamacpp:{result.model_path}" and result.model_path.is_file()
    assert len(result.validation_rewards) == 2 and result.best_epoch == 1  # before, epoch 1
    assert result.train_loss and all(loss > 0 for loss in result.train_loss)
    tuned, _ = load_base(BaseWeights(result.engine, str(result.model_path.parent),
                                     result.model_path.name))
    original, _ = load_base(base)
    changed = [name for name, weight in tuned.state_dict().items()
               if not torch.equal(weight, original.state_dict()[name])]
    assert len(changed) > len(original.state_dict()) // 2
    llm = Llama(model_path=str(result.model_path), n_ctx=512, verbose=False)
    done = llm.create_chat_completion(messages=solution_prompt(problems[0]), max_tokens=8,
                                      temperature=0.0)
    assert done["usage"]["completion_tokens"] > 0
