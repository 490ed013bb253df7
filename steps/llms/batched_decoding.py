r"""Many sequences decoded together through llama.cpp's batch API, each with its own sampler.

    decoder = BatchedDecoder(llama, n_seq_max=16)         # llama: a loaded `llama_cpp.Llama`
    results = decoder.generate([
        DecodeRequest([{"role": "user", "content": "2+3?"}], seeds=(11, 12, 13, 14), temperature=0.7),
        DecodeRequest("<|im_start|>user\n", seeds=(5,), temperature=1.0, stop=("<|im_end|>",)),
    ])
    results[0].texts            # 4 texts, one per seed
    results[0].error            # None, or "context_overflow" / "invalid_schema" / ...

One decode step holds the next token of every live sequence (llama.cpp `examples/batched` and
`examples/parallel`); a request's prompt is decoded once and its KV state copied to its other
samples (`llama_memory_seq_cp`), also to samples that start later while one of its samples is still
live. Freed sequence slots take the next waiting sample at once (continuous batching).

What a sample produces is what llama-cpp-python 0.3.36's `Llama.create_completion` (raw prompt) or
`create_chat_completion` (chat messages) produces for the same settings and seed: the chat prompt
is rendered by `create_chat_completion` itself, the sampler chain is the one `Llama._init_sampler`
builds (repeat penalty, grammar, then greedy or top-k, top-p, min-p, temperature, seeded draw), and
stop strings, end-of-generation tokens, `max_tokens` and the UTF-8 hold-back follow
`Llama._create_completion`. The numbers are the same too, bit for bit: each sequence has its own KV
stream (`kv_unified=False`; with one shared buffer, attention sums over cells laid out by the
batch's history, and 5 of 8 greedy texts changed in a trial here), and each prompt is read in
n_batch chunks of its own while generation steps hold one token per sequence, as in sequential
decoding (see `BatchedDecoder._decode`). So a text depends on its request and seed only, never on
what else is in the batch, and greedy output equals the sequential engine's.

How much batching gains depends on the weight format: a decode step reads the weights once for
all sequences, which pays where reading them is the bottleneck; on a CPU where the matrix kernel
itself is the bottleneck (llama.cpp's Q4_1 dot products on AVX-512), a step costs about as much
per token as one-sequence decoding, and the gain comes from reading each prompt once.
`benchmarks/batched_decoding.py` measures it.
"""

from __future__ import annotations

import ctypes
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jinja2
import llama_cpp
from llama_cpp import llama_grammar

ChatMessages = list[dict[str, Any]]


@dataclass(frozen=True)
class DecodeRequest:
    """One prompt and how to sample it.

    Attributes:
        prompt: raw text sent as is (special tokens parsed, the model's BOS added if its vocabulary
            asks for one; Magpie-style pre-query prompts), or chat messages rendered with the
            model's chat template.
        seeds: one sampling seed per sample, each in [0, 2**32 - 2] (2**32 - 1 is llama.cpp's
            "random seed"); the number of samples is `len(seeds)`. Greedy samples are identical,
            so a greedy request is decoded once and its text repeated.
        max_new_tokens: most tokens to generate per sample; cut to what the sequence's context
            has left after the prompt (the sample then ends with "length"). llama-cpp-python
            refuses such a request instead, which made every Magpie response fail on the
            embedded model (4,096 new tokens asked of a 4,096-token context).
        temperature: 0 is greedy.
        top_k: keep the k most likely tokens (0 keeps all).
        top_p: nucleus sampling mass (1.0 keeps all).
        min_p: drop tokens below min_p × the top probability (0.0 keeps all). The default 0.05 is
            llama-cpp-python's, so a caller that does not pass min_p to `create_completion` uses it.
        repeat_penalty: llama.cpp's repetition penalty over the last 64 tokens (1.0 is none).
        stop: strings that end a sample; the text is cut before the first of them (in this order)
            that appears. A chat template's end-of-turn string is added after these.
        json_schema: constrain the output to this JSON schema (compiled to a GBNF grammar by
            llama-cpp-python's `json_schema_to_gbnf`).
    """

    prompt: str | ChatMessages
    seeds: tuple[int, ...] = (0,)
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Check the settings.

        Raises:
            ValueError: no seed or one outside [0, 2**32 - 2], `max_new_tokens` < 1, a negative
                temperature or a repeat penalty that is not positive.
        """
        if not self.seeds or any(not 0 <= seed < llama_cpp.LLAMA_DEFAULT_SEED for seed in self.seeds):
            raise ValueError(f"seeds must be one or more integers in [0, 2**32 - 2], got {self.seeds}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.repeat_penalty <= 0:
            raise ValueError(f"repeat_penalty must be positive, got {self.repeat_penalty}")


@dataclass
class DecodeResult:
    """What one request produced.

    Attributes:
        texts: one text per seed, in seed order; all None when `error` is set.
        prompt_tokens: tokens in the (rendered) prompt; 0 when the prompt could not be rendered.
        completion_tokens: tokens generated per sample (as llama-cpp-python counts them: tokens cut
            off by a stop string count, the end-of-generation token does not).
        finish_reasons: per sample, "stop" (end-of-generation token or stop string) or "length".
        error: why the request was not decoded, or None: "context_overflow" (the prompt leaves
            no room in the per-sequence context), "empty_prompt" (no prompt tokens),
            "invalid_schema" (the JSON schema does not compile to a grammar), "chat_template"
            (the model's template rejected the messages).
    """

    texts: list[str | None]
    prompt_tokens: int
    completion_tokens: list[int]
    finish_reasons: list[str | None]
    error: str | None = None


class _RenderedChat(Exception):
    """Carries the arguments `create_chat_completion` hands to `create_completion`."""

    def __init__(self, completion_args: dict[str, Any]) -> None:
        super().__init__("chat prompt rendered")
        self.completion_args = completion_args


class _ChatRenderer:
    """Stands in for the Llama inside `create_chat_completion` and stops it before it generates.

    Running llama-cpp-python's own `create_chat_completion` up to its `create_completion` call
    gives the prompt tokens and stop strings exactly as the sequential engine gets them, for
    whatever chat handler the model uses (template from the GGUF, a named format, a custom one).
    """

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, **completion_args: Any) -> Any:
        raise _RenderedChat(completion_args)


@dataclass
class _Prompt:
    """A request being decoded: its prompt, settings and the samples still to start."""

    request: DecodeRequest
    result: DecodeResult
    tokens: list[int]
    stop: list[bytes]
    grammar: str | None
    to_start: deque[int]  # sample indices; only index 0 for a greedy request
    max_new_tokens: int  # the request's, cut to the context left after the prompt
    source: _Sequence | None = None  # a live sample whose KV holds the whole prompt
    leader: _Sequence | None = None  # the sample reading the prompt from scratch
    waiting: list[_Sequence] = field(default_factory=list)  # samples to copy the leader's prompt
    live: list[_Sequence] = field(default_factory=list)


@dataclass
class _Sequence:
    """One sample occupying one llama.cpp sequence id (and its KV stream)."""

    seq_id: int
    prompt: _Prompt
    index: int
    sampler: Any
    pos: int = 0  # tokens in its KV; below len(prompt.tokens) while it reads the prompt
    logits_at: int = -1  # batch row of its logits in the last decode
    tokens: list[int] = field(default_factory=list)  # generated; the last one is not decoded yet
    text: bytes = b""
    held_back: int = 0  # bytes of an incomplete UTF-8 character still expected


def _utf8_hold_back(text: bytes, held_back: int) -> int:
    """Bytes still missing from a multi-byte character at the end of `text` (llama-cpp-python rule).

    A copy of the check in `Llama._create_completion`: while it is positive no stop string or
    length limit is tested, so the two implementations stop on the same token.
    """
    for k, char in enumerate(text[-3:]):
        k = 3 - k
        for num, pattern in ((2, 192), (3, 224), (4, 240)):
            if num > k and pattern & char == pattern:
                held_back = num - k
    return held_back


class BatchedDecoder:
    """Decodes many `DecodeRequest`s together on one loaded llama.cpp model.

    The decoder makes its own llama.cpp context on `llama`'s weights (no second copy of the model),
    with `llama`'s context settings (threads, batch size, KV type, flash attention) and one KV
    stream of `n_ctx_per_seq` cells per sequence slot; the memory it needs grows with
    `n_seq_max × n_ctx_per_seq`.

    Args:
        llama: the loaded model; it also renders chat prompts and tokenizes.
        n_seq_max: sequences decoded together (llama.cpp allows up to
            `llama_max_parallel_sequences()`).
        n_ctx_per_seq: context per sequence in tokens (prompt + generated); default `llama.n_ctx()`.

    Raises:
        ValueError: `n_seq_max` outside [1, llama_max_parallel_sequences()].
        RuntimeError: llama.cpp could not make the context (e.g. out of memory).
    """

    def __init__(self, llama: llama_cpp.Llama, n_seq_max: int, n_ctx_per_seq: int | None = None) -> None:
        """Create the llama.cpp context of `n_seq_max` slots on `llama`'s weights (see the class)."""
        if not 1 <= n_seq_max <= llama_cpp.llama_max_parallel_sequences():
            raise ValueError(
                f"n_seq_max must be in [1, {llama_cpp.llama_max_parallel_sequences()}], got {n_seq_max}"
            )
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.n_seq_max = n_seq_max
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.n_seq_max = n_seq_max
        params.kv_unified = False
        params.n_ctx = (n_ctx_per_seq or llama.n_ctx()) * n_seq_max
        params.n_batch = max(params.n_batch, n_seq_max)
        self._ctx = llama_cpp.llama_init_from_model(llama.model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create the batched decoding context")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_ctx_per_seq = llama_cpp.llama_n_ctx_seq(self._ctx)
        self._n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        """Free the context and batch (the model stays with `llama`)."""
        if self._ctx is not None:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> BatchedDecoder:
        """The decoder itself; leaving the block closes it."""
        return self

    def __exit__(self, *_: object) -> None:
        """Close the decoder (`close`)."""
        self.close()

    def generate(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Decode every request; one result per request, in order.

        A request that cannot be decoded gets its reason in `DecodeResult.error` and the others
        go on.

        Raises:
            RuntimeError: llama.cpp failed to decode a batch (an engine fault, not a request's), or
                the model's chat handler cannot be batched (see `_render_chat`).
        """
        results: list[DecodeResult] = []
        prompts: list[_Prompt] = []
        for request in requests:
            prompt = self._prepare(request)
            results.append(prompt if isinstance(prompt, DecodeResult) else prompt.result)
            if isinstance(prompt, _Prompt):
                prompts.append(prompt)
        self._decode(prompts)
        return results

    def _prepare(self, request: DecodeRequest) -> _Prompt | DecodeResult:
        """Tokenize (or render) the prompt and check the request; a failed check is its result."""
        n = len(request.seeds)

        def failed(error: str, prompt_tokens: int = 0) -> DecodeResult:
            return DecodeResult([None] * n, prompt_tokens, [0] * n, [None] * n, error)

        stop: list[str] = list(request.stop)
        if isinstance(request.prompt, str):
            # What `Llama._create_completion` does with a text prompt: the vocabulary's BOS/EOS
            # rules (add_special) and special tokens parsed.
            tokens = self._llama.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True)
        else:
            try:
                tokens, stop = self._render_chat(request.prompt, stop)
            except (ValueError, TypeError, jinja2.TemplateError):
                return failed("chat_template")
        if not tokens:
            return failed("empty_prompt")
        if len(tokens) >= self.n_ctx_per_seq:
            return failed("context_overflow", len(tokens))
        grammar = None
        if request.json_schema is not None:
            try:
                grammar = llama_grammar.json_schema_to_gbnf(json.dumps(request.json_schema))
            except Exception:  # the converter asserts (AssertionError) or trips (KeyError...) on bad ones
                return failed("invalid_schema", len(tokens))
            probe = llama_cpp.llama_sampler_init_grammar(
                self._vocab, grammar.encode("utf-8"), llama_grammar.LLAMA_GRAMMAR_DEFAULT_ROOT.encode())
            if not probe:
                return failed("invalid_schema", len(tokens))
            llama_cpp.llama_sampler_free(probe)
        greedy = request.temperature == 0
        return _Prompt(
            request=request,
            result=DecodeResult([None] * n, len(tokens), [0] * n, [None] * n),
            tokens=tokens,
            stop=[s.encode("utf-8") for s in stop],
            grammar=grammar,
            to_start=deque(range(1 if greedy else n)),
            max_new_tokens=min(request.max_new_tokens, self.n_ctx_per_seq - len(tokens)),
        )

    def _render_chat(self, messages: ChatMessages, stop: list[str]) -> tuple[list[int], list[str]]:
        """Prompt tokens and stop strings as `create_chat_completion` passes them on.

        Raises:
            ValueError, TypeError, jinja2.TemplateError: the chat template rejected the messages.
            RuntimeError: the model's chat handler does not generate through `create_completion`
                (llama-cpp-python's multimodal and function-calling handlers), so it cannot be batched.
        """
        try:
            llama_cpp.Llama.create_chat_completion(_ChatRenderer(self._llama), messages=messages, stop=stop)
        except _RenderedChat as rendered:
            rendered_stop = rendered.completion_args["stop"]
            # `_create_completion` takes a list, one string or nothing.
            stops = [rendered_stop] if isinstance(rendered_stop, str) else list(rendered_stop or [])
            return list(rendered.completion_args["prompt"]), stops
        raise RuntimeError("the model's chat handler does not generate through create_completion")

    def _sampler(self, request: DecodeRequest, seed: int, grammar: str | None) -> Any:
        """The sampler chain `Llama._init_sampler` builds, without its no-op stages.

        (A repeat penalty of 1.0 and typical-p 1.0 return at once in llama.cpp.)
        """
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        stages = []
        if request.repeat_penalty != 1.0:
            stages.append(llama_cpp.llama_sampler_init_penalties(
                self._llama.n_vocab(), self._llama.last_n_tokens_size, request.repeat_penalty, 0.0, 0.0))
        if grammar is not None:
            stages.append(llama_cpp.llama_sampler_init_grammar(
                self._vocab, grammar.encode("utf-8"), llama_grammar.LLAMA_GRAMMAR_DEFAULT_ROOT.encode()))
        if request.temperature == 0:
            stages.append(llama_cpp.llama_sampler_init_greedy())
        else:
            stages += [
                llama_cpp.llama_sampler_init_top_k(request.top_k),
                llama_cpp.llama_sampler_init_top_p(request.top_p, 1),
                llama_cpp.llama_sampler_init_min_p(request.min_p, 1),
                llama_cpp.llama_sampler_init_temp(request.temperature),
                llama_cpp.llama_sampler_init_dist(seed),
            ]
        for stage in stages:
            llama_cpp.llama_sampler_chain_add(chain, stage)  # the chain owns and frees its stages
        return chain

    def _decode(self, prompts: list[_Prompt]) -> None:
        """Run decode steps until every sample of every prompt has finished.

        Each prompt is read in its own `llama_decode` calls, cut as `Llama.eval` cuts it (n_batch
        tokens); each step then decodes one token of every generating sample in one call. llama.cpp
        computes a token that is alone in its sequence within a ubatch (a generation step) with
        other rounding than one among several (prompt reading): logits differ by up to ~0.5 on
        this model. Keeping that split as in sequential decoding keeps the numbers identical.
        """
        queue = deque(prompts)
        free = list(range(self.n_seq_max - 1, -1, -1))  # pop() hands out the lowest id first
        live: list[_Sequence] = []
        try:
            while queue or live:
                self._admit(queue, free, live)
                for seq in [s for s in live if s.pos < len(s.prompt.tokens)]:
                    self._read_prompt(seq)
                    ready = [seq, *self._join_leader(seq, live)] if seq.prompt.leader is seq else [seq]
                    for sample in ready:
                        self._advance(sample, free, live)
                step = list(live)
                if step:
                    self._decode_rows([(seq, seq.tokens[-1:], True) for seq in step])
                    for seq in step:
                        self._advance(seq, free, live)
        finally:
            for prompt in prompts:
                for seq in prompt.live + prompt.waiting:
                    llama_cpp.llama_sampler_free(seq.sampler)
                prompt.live.clear()
                prompt.waiting.clear()
            llama_cpp.llama_memory_clear(self._memory, True)

    def _admit(self, queue: deque[_Prompt], free: list[int], live: list[_Sequence]) -> None:
        """Give free sequence slots to waiting samples, first come first served.

        A sample starts in one of three ways: it reads its prompt from scratch (the first of its
        request), it waits for that reading to finish and copies it (`_join_leader`), or it copies
        the prompt from a live sample of its request and re-reads only the prompt's last tokens to
        get logits again: 2 tokens, or 1 where sequential decoding reads the last one alone (see
        `_decode`), so that the logits are the same.
        """
        while queue and free:
            prompt = queue[0]
            while prompt.to_start and free:
                index = prompt.to_start.popleft()
                seq = _Sequence(free.pop(), prompt, index,
                                self._sampler(prompt.request, prompt.request.seeds[index], prompt.grammar))
                if prompt.source is not None:
                    llama_cpp.llama_memory_seq_cp(self._memory, prompt.source.seq_id, seq.seq_id, -1, -1)
                    last_chunk = len(prompt.tokens) % self._llama.n_batch or self._llama.n_batch
                    seq.pos = len(prompt.tokens) - (1 if last_chunk == 1 else 2)
                    llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, seq.pos, -1)
                elif prompt.leader is None:
                    prompt.leader = seq
                else:
                    prompt.waiting.append(seq)
                    continue
                prompt.live.append(seq)
                live.append(seq)
            if not prompt.to_start:
                queue.popleft()

    def _read_prompt(self, seq: _Sequence) -> None:
        """Decode the rest of the sample's prompt, n_batch tokens per call; logits for the last."""
        tokens, n_batch = seq.prompt.tokens, self._llama.n_batch
        while seq.pos < len(tokens):
            chunk = tokens[seq.pos: seq.pos + n_batch]
            self._decode_rows([(seq, chunk, seq.pos + len(chunk) == len(tokens))])

    def _decode_rows(self, parts: list[tuple[_Sequence, list[int], bool]]) -> None:
        """One `llama_decode` of each sample's tokens at its next positions (logits: on the last).

        Raises:
            RuntimeError: llama.cpp refused the batch.
        """
        batch, rows = self._batch, 0
        for seq, tokens, logits in parts:
            for j, token in enumerate(tokens):
                batch.token[rows + j] = token
                batch.pos[rows + j] = seq.pos + j
                batch.n_seq_id[rows + j] = 1
                batch.seq_id[rows + j][0] = seq.seq_id
                batch.logits[rows + j] = False
            rows += len(tokens)
            seq.pos += len(tokens)
            batch.logits[rows - 1] = logits
            seq.logits_at = rows - 1
        batch.n_tokens = rows
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def _join_leader(self, leader: _Sequence, live: list[_Sequence]) -> list[_Sequence]:
        """The leader has read the whole prompt: copy its KV to the waiting samples.

        They sample their first token from the leader's logits (same row, own sampler). The copy
        is a whole KV stream (llama.cpp copies across streams only whole), done by llama.cpp at the
        start of the next decode, before that batch writes to any stream.
        """
        prompt = leader.prompt
        prompt.leader, prompt.source = None, leader
        joined, prompt.waiting = prompt.waiting, []
        for seq in joined:
            llama_cpp.llama_memory_seq_cp(self._memory, leader.seq_id, seq.seq_id, -1, -1)
            seq.pos, seq.logits_at = leader.pos, leader.logits_at
            prompt.live.append(seq)
            live.append(seq)
        return joined

    def _advance(self, seq: _Sequence, free: list[int], live: list[_Sequence]) -> None:
        """Sample the next token from the last decode's logits; finish the sample if it ends."""
        reason = self._sample(seq)
        if reason is not None:
            self._finish(seq, reason, free, live)

    def _sample(self, seq: _Sequence) -> str | None:
        """Sample one token; the finish reason if the sample ends here (as `_create_completion`)."""
        token = llama_cpp.llama_sampler_sample(seq.sampler, self._ctx, seq.logits_at)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return "stop"
        seq.tokens.append(token)
        seq.text += self._piece(token)
        seq.held_back = _utf8_hold_back(seq.text, seq.held_back)
        if seq.held_back > 0:
            seq.held_back -= 1
        else:
            text = self._text(seq)
            first_stop = next((s for s in seq.prompt.stop if s in text), None)
            if first_stop is not None:
                seq.text = text[: text.index(first_stop)]
                return "stop"
            if len(seq.tokens) >= seq.prompt.max_new_tokens:
                return "length"
        if seq.pos >= self.n_ctx_per_seq:  # only a held-back character can run this far
            return "length"
        return None

    def _text(self, seq: _Sequence) -> bytes:
        """`Llama.detokenize` of the sample's tokens: drops a leading space after a leading BOS."""
        if seq.tokens and seq.tokens[0] == self._llama.token_bos() and seq.text[:1] == b" ":
            return seq.text[1:]
        return seq.text

    def _piece(self, token: int) -> bytes:
        """A token's text, as `Llama.detokenize` spells it (special tokens as empty)."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            if n < 0:  # llama.cpp asks for a larger buffer by returning minus its size
                buffer = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            piece = self._pieces[token] = buffer.raw[:n]
        return piece

    def _finish(self, seq: _Sequence, reason: str, free: list[int], live: list[_Sequence]) -> None:
        """Record the sample's text (every index of a greedy request) and free its slot."""
        prompt, result = seq.prompt, seq.prompt.result
        text = self._text(seq).decode("utf-8", errors="ignore")
        indices = range(len(result.texts)) if prompt.request.temperature == 0 else (seq.index,)
        for index in indices:
            result.texts[index] = text
            result.completion_tokens[index] = len(seq.tokens)
            result.finish_reasons[index] = reason
        llama_cpp.llama_sampler_free(seq.sampler)
        llama_cpp.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
        live.remove(seq)
        prompt.live.remove(seq)
        free.append(seq.seq_id)
        if prompt.source is seq:
            prompt.source = next(iter(prompt.live), None)
