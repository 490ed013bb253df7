"""llama.cpp in process (llama-cpp-python): the embedded model and any local GGUF.

(No distilabel Step is defined here, so `from __future__ import annotations` is safe.)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilabel.models.llms import LLM
from pydantic import PrivateAttr, validate_call

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
    from steps.engines import EngineSpec

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
    """llama.cpp through llama-cpp-python, with JSON-schema grammars and a seed per input.

    distilabel's own LlamaCppLLM needs outlines for structured output and seeds the model once,
    so sampled outputs depend on call order; this one uses llama.cpp's native schema grammar and
    a seed per input and generation. Sampling applies only what the caller asks: no top-k and no
    repetition penalty by default (llama.cpp's own defaults, top-k 40 and repeat_penalty 1.1,
    are not the papers'; ReST-EM asks for top-k 40 itself). A prompt longer than the context
    comes back as an error `context_overflow`, not as an exception.
    """

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    _model: Any = PrivateAttr(default=None)

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None,
                  generation: dict[str, Any]) -> LlamaCppEngine:
        return cls(model_path=spec.model, n_threads=n_threads, generation_kwargs=generation)

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """Raises UserError when the GGUF is missing or not a GGUF."""
        check_gguf(Path(spec.model))

    def load(self) -> None:
        from llama_cpp import Llama

        self._model = Llama(
            model_path=self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,  # prompt reading too: one engine per step process
            verbose=False,
        )
        super().load()

    def unload(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None
        super().unload()

    @property
    def model_name(self) -> str:
        return Path(self.model_path).name

    def _generate_one(self, prompt: Prompt, sampling: dict[str, Any]) -> Generation:
        """One generation: the single place where this engine decodes."""
        self._model.reset()  # no prefix-cache reuse: same input, same numbers, any order
        try:
            if isinstance(prompt.messages, str):
                done = self._model.create_completion(prompt=prompt.messages, **sampling)
                text = done["choices"][0]["text"]
            else:
                schema = ({"response_format": {"type": "json_object", "schema": prompt.schema}}
                          if prompt.schema else {})
                done = self._model.create_chat_completion(
                    messages=prompt.messages, **sampling, **schema)
                text = done["choices"][0]["message"]["content"]
        except ValueError as error:  # llama-cpp-python's refusal of an input
            reason = CONTEXT_OVERFLOW if "context window" in str(error) else "engine_error:refused"
            return Generation(error=engine_error(reason, error))
        return Generation(text, done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"])

    @validate_call
    def generate(  # type: ignore[override] - named sampling settings instead of **kwargs
        self,
        inputs: list[Any],
        num_generations: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repeat_penalty: float = 1.0,
        stop: list[str] | None = None,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        """`num_generations` per input; see `steps.llms.base` for inputs and outputs.

        `top_k` 0 and `repeat_penalty` 1.0 switch those samplers off (llama.cpp's meaning).
        """
        sampling = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                    "top_k": top_k, "repeat_penalty": repeat_penalty, "stop": stop or []}
        results = []
        for item in inputs:
            prompt = as_prompt(item)
            results.append(engine_output([
                self._generate_one(prompt, {**sampling, "seed": generation_seed(prompt, i, seed)})
                for i in range(num_generations)]))
        return results
