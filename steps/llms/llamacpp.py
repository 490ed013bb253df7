"""llama.cpp in process (llama-cpp-python): the embedded model and any local GGUF.

(No distilabel Step is defined here, so `from __future__ import annotations` is safe.)
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilabel.models.llms import LLM
from pydantic import PrivateAttr, validate_call

from steps.engines import LLAMACPP_CONTEXT, LLAMACPP_SEQUENCES
from steps.errors import UserError
from steps.llms.base import (
    CONTEXT_OVERFLOW,
    Generation,
    Prompt,
    as_prompt,
    engine_error,
    engine_output,
    generation_seed,
)

if TYPE_CHECKING:
    from steps.engines import EngineSpec, LocalDecoding

# llama.cpp's OpenMP threads spin while waiting by default; with one engine per distilabel step
# process on a small machine they starve each other (a tenfold slowdown was measured here).
# Set before llama.cpp is first loaded, which is lazy (LlamaCppEngine.load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """A readable GGUF header: the magic, a known version, a tensor and metadata count.

    Read with `struct`, not llama.cpp: loading llama.cpp in a process that distilabel later
    forks can hang the fork (OpenMP), and the header is enough to catch a wrong or cut file.

    Raises:
        UserError: the file is missing, unreadable or not a GGUF (message without the path's
        folder; the caller names the option).
    """
    try:
        with path.open("rb") as file:
            header = file.read(24)
    except OSError as error:
        raise UserError(f"cannot read {path.name} ({error.strerror})") from None
    if len(header) < 24 or header[:4] != GGUF_MAGIC:
        raise UserError(f"{path.name} is not a GGUF file (no GGUF header)")
    version, _tensors, _metadata = struct.unpack("<IQQ", header[4:24])
    if version not in (2, 3):
        raise UserError(f"{path.name}: GGUF version {version} is not one llama.cpp reads")


class LlamaCppEngine(LLM):
    """llama.cpp through llama-cpp-python, decoding many sequences at once, seeded per input.

    distilabel's own LlamaCppLLM needs outlines for structured output, seeds the model once (so
    sampled outputs depend on call order) and decodes one sequence at a time; this one decodes
    every generation of a call together (`steps.llms.batched_decoding.BatchedDecoder`, issue 13),
    with llama.cpp's native schema grammar and a seed per input and generation. Inputs of one
    call with the same prompt and schema become one decode request, so their prompt is read once
    (ReST-EM's k samples of a problem, Magpie's shared pre-query prompt). A text depends on its
    prompt, settings and seed only, never on the batch: greedy output is what sequential
    llama-cpp-python decoding gives.

    Sampling applies only what the caller asks: no top-k, min-p or repetition penalty by default
    (llama-cpp-python's defaults, top-k 40, min-p 0.05 and repeat_penalty 1.1, are not the
    papers'; ReST-EM asks for top-k 40 itself). A request that cannot be decoded comes back as an
    error with the decoder's reason (`context_overflow`: the prompt fills a sequence's context;
    `invalid_schema`, `chat_template`, `empty_prompt`), not as an exception. max_new_tokens is
    cut to the context left after the prompt.

    Memory: the KV cache holds `n_seq_max × n_ctx` tokens (about 23 KB each for SmolLM2-135M,
    so 8 × 4096 is about 750 MB), allocated when the model loads. A caller that knows its batch
    and prompts sizes both with `build_llm(..., sequences=, prompts=)` (`LocalDecoding.fit`).
    """

    model_path: str
    n_ctx: int = LLAMACPP_CONTEXT  # tokens per sequence: prompt + generated
    n_seq_max: int = LLAMACPP_SEQUENCES  # sequences decoded together
    n_threads: int | None = None
    _model: Any = PrivateAttr(default=None)
    _decoder: Any = PrivateAttr(default=None)

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None, generation: dict[str, Any],
                  decoding: LocalDecoding | None = None) -> LlamaCppEngine:
        """The engine of a parsed spec (`steps.engines.build_llm`), opened as `decoding` says."""
        sized = {} if decoding is None else {"n_seq_max": decoding.n_seq_max, "n_ctx": decoding.n_ctx}
        return cls(model_path=spec.model, n_threads=n_threads, generation_kwargs=generation, **sized)

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """Raises UserError when the GGUF is missing or not a GGUF."""
        check_gguf(Path(spec.model))

    def load(self) -> None:
        """Load the weights and make the batched decoder's context (its KV cache).

        Raises:
            RuntimeError: llama.cpp could not make the context (e.g. out of memory).
        """
        from llama_cpp import Llama

        from steps.llms.batched_decoding import BatchedDecoder

        self._model = Llama(
            model_path=self.model_path,
            # The decoder has its own KV cache; this context only sets the prompt-reading chunk
            # (n_batch = min(512, n_ctx)), which must stay 512 for outputs to equal sequential ones.
            n_ctx=512,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,  # prompt reading too: one engine per step process
            verbose=False,
        )
        self._decoder = BatchedDecoder(self._model, n_seq_max=self.n_seq_max, n_ctx_per_seq=self.n_ctx)
        super().load()

    def unload(self) -> None:
        """Free the decoder's context and the weights."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._model is not None:
            self._model.close()
            self._model = None
        super().unload()

    @property
    def model_name(self) -> str:
        """The GGUF file's name."""
        return Path(self.model_path).name

    def _decode(self, prompts: list[Prompt], num_generations: int, sampling: dict[str, Any],
                default_seed: int) -> list[list[Generation]]:
        """`num_generations` per prompt, all decoded together: the one place this engine decodes.

        Prompts with the same messages and schema share one request (their prompt is read once);
        each generation keeps its own seed (`steps.llms.base.generation_seed`).
        """
        # Imported on use, as in `load`: importing llama_cpp starts OpenMP, and a process that
        # distilabel forks afterwards can hang.
        from steps.llms.batched_decoding import DecodeRequest

        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            key = json.dumps([prompt.messages, prompt.schema], sort_keys=True)
            groups.setdefault(key, []).append(index)
        requests = [DecodeRequest(
            prompts[members[0]].messages, json_schema=prompts[members[0]].schema, **sampling,
            seeds=tuple(generation_seed(prompts[m], i, default_seed)
                        for m in members for i in range(num_generations)))
            for members in groups.values()]
        generations: list[list[Generation]] = [[] for _ in prompts]
        for members, result in zip(groups.values(), self._decoder.generate(requests), strict=True):
            error = result.error and engine_error(result.error, _ERROR_MESSAGES.get(
                result.error, result.error).format(prompt=result.prompt_tokens,
                                                   ctx=self._decoder.n_ctx_per_seq))
            for slot, member in enumerate(members):
                generations[member] = [
                    Generation(error=error) if error else
                    Generation(result.texts[i], result.prompt_tokens, result.completion_tokens[i])
                    for i in range(slot * num_generations, (slot + 1) * num_generations)]
        return generations

    @validate_call
    def generate(  # type: ignore[override] - named sampling settings instead of **kwargs
        self,
        inputs: list[Any],
        num_generations: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        stop: list[str] | None = None,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        """`num_generations` per input; see `steps.llms.base` for inputs and outputs.

        `top_k` 0, `min_p` 0.0 and `repeat_penalty` 1.0 switch those samplers off (llama.cpp's
        meaning).

        Raises:
            RuntimeError: llama.cpp failed to decode (an engine fault; `LLMStep` records it per
                request as `engine_error:exception`).
        """
        sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                    "top_k": top_k, "min_p": min_p, "repeat_penalty": repeat_penalty,
                    "stop": tuple(stop or ())}
        prompts = [as_prompt(item) for item in inputs]
        return [engine_output(generations)
                for generations in self._decode(prompts, num_generations, sampling, seed)]


# What a decoder's refusal says on the card (`BatchedDecoder` reasons).
_ERROR_MESSAGES = {
    CONTEXT_OVERFLOW: "Requested tokens ({prompt} prompt) exceed context window of {ctx}",
    "invalid_schema": "the JSON schema does not compile to a llama.cpp grammar",
    "chat_template": "the model's chat template rejected the messages",
    "empty_prompt": "the prompt has no tokens",
}
