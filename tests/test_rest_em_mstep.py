"""ReST-EM M-step: one tiny fine-tune of the embedded model, written back to GGUF for llama.cpp.

Needs the [train] extra (torch, transformers, trl, gguf); skipped without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MISSING = [name for name in ("torch", "transformers", "trl", "gguf")
           if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"[train] extra not installed ({', '.join(MISSING)})"),
    pytest.mark.model,
]


def test_permutation_for_llama_cpp_inverts_transformers_unpermute() -> None:
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from steps.rest_em.gguf_export import permute_for_llama_cpp

    weights = np.arange(12 * 4, dtype=np.float32).reshape(12, 4)
    unpermute = LlamaTensorProcessor({"num_attention_heads": 3, "num_key_value_heads": 3})
    loaded = unpermute.process(permute_for_llama_cpp(weights, 3, 3), "blk.0.attn_q.weight").weights
    assert np.array_equal(loaded, weights)


def test_fine_tune_trains_the_base_and_exports_a_loadable_gguf(tmp_path: Path) -> None:
    import torch
    from llama_cpp import Llama

    from steps.rest_em.mstep import BaseModel, MStepSettings, fine_tune
    from steps.rest_em.problems import arithmetic_problems
    from steps.rest_em.prompts import solution_prompt
    from steps.rest_em.sft import load_base

    problems = arithmetic_problems(4, seed=0)
    rows = [{"messages": [*solution_prompt(p), {"role": "assistant",
                                                "content": f"Answer: {p.answer}"}]}
            for p in problems[:2]]
    base = BaseModel.from_engine("embedded")
    settings = MStepSettings(epochs=1, learning_rate=1e-3, batch_size=1, eval_max_new_tokens=8,
                             eval_batch_size=2)
    result = fine_tune(base, rows, problems[2:], tmp_path, settings=settings)

    assert result.engine == f"llamacpp:{result.model_path}" and result.model_path.is_file()
    assert len(result.heldout_rewards) == 2 and result.best_epoch == 1  # before, after epoch 1
    assert result.train_loss and all(loss > 0 for loss in result.train_loss)
    tuned, _ = load_base(BaseModel(str(result.model_path.parent), result.model_path.name))
    original, _ = load_base(base)
    # F16 export alone keeps every tensor within rtol 1e-3 of the base; training moves them more.
    changed = [name for name, weight in tuned.state_dict().items()
               if not torch.allclose(weight, original.state_dict()[name], rtol=1e-3, atol=1e-6)]
    assert len(changed) > len(original.state_dict()) // 2
    llm = Llama(model_path=str(result.model_path), n_ctx=512, verbose=False)
    done = llm.create_chat_completion(messages=solution_prompt(problems[0]), max_tokens=8,
                                      temperature=0.0)
    assert done["usage"]["completion_tokens"] > 0
