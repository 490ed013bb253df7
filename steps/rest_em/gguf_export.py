"""Write fine-tuned weights back into GGUF, so llama.cpp engines can sample from the new model.

transformers loads a GGUF by dequantising it (and un-permuting llama's Q/K rows); this does the
reverse for llama-architecture files: the base file's metadata and tokenizer, every tensor from
the fine-tuned model, all in F32. Re-quantising to the base's Q4 would round most of a
fine-tune's small weight changes back to the base's own grid values, undoing it, and even F16
rounding erased 55% of the changed weights of a small fine-tune (measured on SmolLM2-135M).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.errors import UserError

ALL_F32 = 0  # llama.cpp's LLAMA_FTYPE_ALL_F32


def permute_for_llama_cpp(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's Q/K row order (llama.cpp's HF converter `permute`), the inverse of transformers'."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def export_llama_gguf(model: Any, base_gguf: Path, target: Path) -> Path:
    """`model` (a transformers LlamaForCausalLM loaded from `base_gguf`) as an F32 GGUF at `target`.

    Raises:
        UserError: `base_gguf` is not a llama-architecture GGUF.
    """
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    reader = GGUFReader(base_gguf)
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise UserError(f"--train with a llama.cpp engine: only llama-architecture GGUFs can be "
                        f"written back ({base_gguf.name} is {arch}); use a vllm: engine instead")
    hf_names = get_gguf_hf_weights_map(model, TensorProcessor())
    state = model.state_dict()
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(target, arch)  # writes general.architecture itself
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = ALL_F32 if field.name == "general.file_type" else field.contents()
        sub_type = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type)
    for tensor in reader.tensors:
        weights = state[hf_names[tensor.name]].detach().float().numpy()
        if ".attn_q." in tensor.name:
            weights = permute_for_llama_cpp(weights, heads, heads)
        elif ".attn_k." in tensor.name:
            weights = permute_for_llama_cpp(weights, heads, kv_heads)
        writer.add_tensor(tensor.name, weights.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
