"""A protocol double of an OpenAI-compatible inference server, with latency and injected faults.

It stands in for vLLM, SGLang, TGI or llama.cpp's server under load and faults, which cannot run
on the machines these tests and benchmarks run on. It speaks the subset of the OpenAI API the
engines use:

    GET  /v1/models              the one model it serves (any requested model name is accepted);
                                 only `down` affects it, so a preflight check passes on a server
                                 whose generation requests fail
    POST /v1/chat/completions    a chat reply; JSON valid for the schema when `response_format`
                                 carries one, as `{"type": "json_schema", "json_schema": {"schema":…}}`
                                 or llama.cpp's `{"type": "json_object", "schema": …}`
    POST /v1/completions         a raw-prompt completion (Magpie's pre-query templates)

Every reply carries `usage` counts (one token per word or punctuation mark) and is a function of
the request alone (its seed, model, prompt and schema) and of the double's seed, so a rerun gets
the same text whatever the order or concurrency.

Faults are drawn per request from (double seed, endpoint, body, how often that body was seen), so
which request fails does not depend on arrival order, and a retry of a failed request draws
afresh: a share answered with an HTTP error status (`fail_rate`, `fail_status`), a share answered
429 with `Retry-After` (`rate_limit_rate`), a share that hang (`hang_rate`, `hang_s`: past any client
timeout), a fixed latency with optional uniform jitter, `down` (every connection is dropped
without an answer), and `healthy_after` (no faults once that many requests have arrived). The
settings can be changed while it runs (`configure()` or `POST /admin/faults` with a JSON object of
settings) so a test can make a rerun succeed.

Admin endpoints, not counted and never faulty: `GET /stats` (requests, per-status counts, peak
and time-weighted mean requests in flight, over the busy window and over the capped window
from the first to the last moment at the peak), `POST /admin/faults`, `POST /admin/reset`.

As a script (prints its URL as the first line of stdout, then serves until killed):

    python tests/openai_double.py --port 0 --latency 1.0 --fail-rate 0.2 --status 500

In tests: `with OpenAIDouble(Faults(latency=0.1)) as server: ... server.url ... server.stats()`
(an asyncio server in a background thread on 127.0.0.1, on a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MODEL = "double"
WORDS = (
    "the", "model", "reads", "a", "passage", "and", "writes", "clear", "answer", "about", "data",
    "time", "water", "energy", "city", "river", "market", "policy", "science", "history", "music",
    "language", "number", "system", "network", "student", "teacher", "method", "result", "value",
    "problem", "question", "reason", "example", "process", "change", "growth", "level", "rate", "cost",
    "plan", "team", "report", "study", "group", "area", "field", "point", "line", "table", "list",
    "order", "rule", "case", "form", "part", "story", "world", "light", "sound", "image", "signal",
    "record", "source", "share", "price", "trade", "law", "court", "health", "care", "food", "plant",
    "animal", "cell", "rock", "earth", "space", "star", "moon", "sun", "wind", "rain", "season", "road",
    "bridge", "train", "ship", "engine", "tool", "code", "function", "class", "object", "memory",
    "file", "query", "index", "search", "graph", "tree", "node", "edge", "path"
)
TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The double's token count: one per word or punctuation mark (a stand-in for a tokenizer)."""
    return len(TOKEN.findall(text))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (e.g. for a 'server down' test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Faults:
    """What the double does to requests; rates are shares of requests in [0, 1], times in s."""

    latency: float = 0.0  # before every answer except 429s and dropped connections
    jitter: float = 0.0  # uniform in [-jitter, +jitter] around the latency, never below 0
    fail_rate: float = 0.0  # answered `fail_status`
    fail_status: int = 500
    rate_limit_rate: float = 0.0  # answered 429 with Retry-After
    retry_after: float = 1.0  # seconds, sent in the Retry-After header
    hang_rate: float = 0.0  # held for `hang_s` before the (then late) answer
    hang_s: float = 3600.0
    down: bool = False  # drop every connection without an answer
    healthy_after: int | None = None  # no faults for requests after this many have arrived
    seed: int = 0
    text_tokens: int = 48  # length of a plain-text answer, at most the request's max_tokens

    def __post_init__(self) -> None:
        rates = (self.fail_rate, self.rate_limit_rate, self.hang_rate)
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1, got {rates}")


@dataclass
class Stats:
    """What the double saw: counts, and requests in flight over time (time-weighted mean over
    the busy window, from the first request's arrival to the last answer)."""

    requests: int = 0
    status: Counter[int] = field(default_factory=Counter)  # 0 = connection dropped
    by_endpoint: Counter[str] = field(default_factory=Counter)
    hung: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_at: float | None = None
    last_change: float | None = None
    area: float = 0.0  # integral of in_flight over time
    # The capped window: from the first to the last moment at the peak (the client's cap, once it
    # is reached), so start-up and the final drain, when a chain of steps has less work ready
    # than its cap, are left out; (time, area) at each end.
    capped_from: tuple[float, float] = (0.0, 0.0)
    capped_to: tuple[float, float] = (0.0, 0.0)

    def change(self, delta: int) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = self.last_change = now
        self.area += self.in_flight * (now - self.last_change)
        self.last_change = now
        self.in_flight += delta
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
            self.capped_from = self.capped_to = (now, self.area)
        elif self.in_flight == self.peak_in_flight:
            self.capped_to = (now, self.area)

    def as_dict(self) -> dict[str, Any]:
        busy = 0.0
        area = self.area
        if self.first_at is not None:
            now = time.monotonic() if self.in_flight else self.last_change
            area += self.in_flight * (now - self.last_change)
            busy = now - self.first_at
        capped_s = self.capped_to[0] - self.capped_from[0]
        capped_area = self.capped_to[1] - self.capped_from[1]
        return {
            "requests": self.requests,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "by_endpoint": dict(self.by_endpoint),
            "hung": self.hung,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "mean_in_flight": round(area / busy, 3) if busy > 0 else 0.0,
            "busy_s": round(busy, 3),
            "capped_s": round(capped_s, 3),
            "mean_in_flight_capped": round(capped_area / capped_s, 3) if capped_s > 0 else 0.0,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _words(rng: random.Random, n: int) -> str:
    """Sentences of 6–14 words, `n` tokens in all (words and full stops, see `count_tokens`)."""
    out: list[str] = []
    tokens = sentence = 0
    while tokens < n:
        word = rng.choice(WORDS)
        out.append(word.capitalize() if sentence == 0 else word)
        tokens += 1
        sentence += 1
        if sentence >= rng.randint(6, 14) and tokens < n:
            out[-1] += "."
            tokens += 1
            sentence = 0
    return " ".join(out)


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return "2024-01-01"
    if fmt == "date-time":
        return "2024-01-01T00:00:00Z"
    low = schema.get("minLength", 1)
    high = schema.get("maxLength", max(low, 120))
    target = max(low, min(high, rng.randint(12, 60)))
    text = _words(rng, target // 4 + 1)[:target].rstrip()
    return text.ljust(low, "x")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:  # local references only ("#/$defs/Name"), as pydantic writes them
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def schema_instance(schema: dict[str, Any], rng: random.Random,
                    root: dict[str, Any] | None = None) -> Any:
    """A small JSON value valid for `schema`: required (and declared) properties, enums and
    consts, bounds on item counts, string lengths and numbers; `$ref`/`$defs`, anyOf/oneOf (the
    first non-null branch) and allOf. Patterns are not honoured (nothing here sends one).

    Args:
        schema: a JSON schema (draft 2020-12 subset, as pydantic's `model_json_schema` writes).
        rng: the source of the choices, seeded per request.
        root: the document `$ref`s point into (the schema itself at the top).
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolve(o, root).get("type") != "null"]
            return schema_instance((options or schema[key])[0], rng, root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return schema_instance(merged, rng, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: schema_instance(sub, rng, root) for name, sub in properties.items()}
    if kind == "array":
        n = max(schema.get("minItems", 0), min(schema.get("maxItems", 2), 2))
        prefix = schema.get("prefixItems", [])
        return [schema_instance(prefix[i] if i < len(prefix) else schema.get("items", {}), rng, root)
                for i in range(n)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 101) - 1)
        value = rng.randint(int(-(-low // 1)), int(high // 1)) if high >= low else low
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    if fmt.get("type") == "json_object":
        return fmt.get("schema") or {"type": "object"}
    return None


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, kind: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "code": status}})


class OpenAIDouble:
    """The server (HTTP/1.1 with keep-alive on asyncio streams, so that a dropped connection and
    a client that gives up on a hung request are under its control); a context manager that runs
    it in a background thread on 127.0.0.1."""

    def __init__(self, faults: Faults | None = None, *, port: int = 0, model: str = MODEL) -> None:
        self.faults = faults or Faults()
        self.model = model
        self.port = port
        self.url = ""  # http://127.0.0.1:PORT/v1 once started
        self._stats = Stats()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None

    # --- control (any thread) ---
    def configure(self, **changes: Any) -> Faults:
        """Change fault settings while running, e.g. `configure(fail_rate=0)`; returns them.

        Raises:
            TypeError, ValueError: unknown setting or rates out of range.
        """
        with self._lock:
            self.faults = replace(self.faults, **changes)
            return self.faults

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.as_dict()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = Stats()
            self._seen.clear()

    # --- running ---
    async def start_async(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port,
                                                  backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self.url

    async def stop_async(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # open connections and hung requests end
                writer.transport.abort()
            await asyncio.sleep(0)

    def __enter__(self) -> OpenAIDouble:
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop_async())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="openai-double", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the OpenAI double did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # --- HTTP ---
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in header_lines if line)}
                if "chunked" in headers.get("transfer-encoding", ""):
                    reply: Reply | None = _error(411, "send a Content-Length", "invalid_request")
                    body = b""
                else:
                    body = await reader.readexactly(int(headers.get("content-length", 0)))
                    reply = await self._route(method, target.split("?")[0], body, reader, writer)
                if reply is None:  # dropped or the client went away
                    return
                data = json.dumps(reply.body).encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    f"{extra}\r\n".encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> Reply | None:
        if (method, path) == ("GET", "/v1/models"):
            if self.faults.down:  # down is down for every endpoint; the rates apply to generation
                writer.transport.abort()
                return None
            return Reply(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "openai-double"}]})
        if (method, path) == ("GET", "/stats"):
            return Reply(200, self.stats())
        if (method, path) == ("POST", "/admin/faults"):
            return self._set_faults(body)
        if (method, path) == ("POST", "/admin/reset"):
            self.reset_stats()
            return Reply(200, {"reset": True})
        if method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            return await self._generate(path, body, reader, writer)
        return _error(404, f"no route {method} {path}", "not_found")

    def _set_faults(self, body: bytes) -> Reply:
        known = {f.name for f in fields(Faults)}
        try:
            changes = json.loads(body)
            if not isinstance(changes, dict) or set(changes) - known:
                raise ValueError(f"settings are among {sorted(known)}")
            return Reply(200, asdict(self.configure(**changes)))
        except (TypeError, ValueError) as error:
            return _error(400, str(error), "invalid_request")

    async def _generate(self, path: str, raw: bytes, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> Reply | None:
        digest = hashlib.sha256(path.encode() + b"\0" + raw).hexdigest()
        with self._lock:
            faults, stats = self.faults, self._stats
            stats.requests += 1
            stats.by_endpoint[path] += 1
            self._seen[digest] += 1
            draw = _rng(faults.seed, digest, self._seen[digest]).random()
            faulty = faults.healthy_after is None or stats.requests <= faults.healthy_after
            stats.change(+1)
        status = 0  # no answer, unless one is sent below
        try:
            if faults.down and faulty:
                writer.transport.abort()  # the client sees the connection dropped
                return None
            if faulty and draw < faults.rate_limit_rate:
                status = 429
                return Reply(429, _error(429, "rate limit reached (double)", "rate_limit").body,
                             {"Retry-After": f"{faults.retry_after:g}"})
            delay = faults.latency
            if faults.jitter:
                delay = max(0.0, delay + _rng(faults.seed, digest, "jitter").uniform(
                    -faults.jitter, faults.jitter))
            if faulty and draw < faults.rate_limit_rate + faults.hang_rate:
                with self._lock:
                    stats.hung += 1
                delay = faults.hang_s
            try:  # the client sends nothing more before the answer: a read ends when it leaves
                await asyncio.wait_for(reader.read(1), delay)
                return None
            except TimeoutError:
                pass
            if faulty and draw < faults.rate_limit_rate + faults.hang_rate + faults.fail_rate:
                status = faults.fail_status
                return _error(status, f"injected fault {status} (double)", "server_error")
            try:
                answer = self._answer(json.loads(raw), path == "/v1/chat/completions")
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
                status = 400
                return _error(400, f"bad request: {error!r}", "invalid_request")
            status = 200
            with self._lock:
                stats.prompt_tokens += answer["usage"]["prompt_tokens"]
                stats.completion_tokens += answer["usage"]["completion_tokens"]
            return Reply(200, answer)
        finally:
            with self._lock:
                stats.status[status] += 1
                stats.change(-1)

    def _answer(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        """The reply to a well-formed request: a function of the request and the double's seed."""
        if chat:
            messages = body["messages"]
            prompt_tokens = sum(count_tokens(str(m.get("content") or "")) + 4 for m in messages)
            prompt: Any = messages
        else:
            prompt = body["prompt"]
            prompt_tokens = count_tokens(prompt if isinstance(prompt, str) else json.dumps(prompt))
        schema = _response_schema(body) if chat else None
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 256
        choices, completion_tokens = [], 0
        for index in range(body.get("n") or 1):
            rng = _rng(self.faults.seed, body.get("seed"), body.get("model"), prompt, schema, index)
            if schema is not None:  # grammar-constrained servers finish the JSON
                text, finish = json.dumps(schema_instance(schema, rng)), "stop"
            else:
                n = min(max_tokens, self.faults.text_tokens)
                text, finish = _words(rng, n), "length" if n == max_tokens else "stop"
            completion_tokens += count_tokens(text)
            choices.append(
                {"index": index, "message": {"role": "assistant", "content": text},
                 "finish_reason": finish, "logprobs": None} if chat else
                {"index": index, "text": text, "finish_reason": finish, "logprobs": None})
        request_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{request_id}",
            "object": "chat.completion" if chat else "text_completion",
            "created": 0,
            "model": body.get("model") or self.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--jitter", type=float, default=0.0, help="± seconds around the latency")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share answered --status")
    p.add_argument("--status", type=int, default=500, help="status of the failed share")
    p.add_argument("--rate-limit-rate", type=float, default=0.0, help="share answered 429")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of the 429s, s")
    p.add_argument("--hang-rate", type=float, default=0.0, help="share held for --hang-s")
    p.add_argument("--hang-s", type=float, default=3600.0)
    p.add_argument("--down", action="store_true", help="drop every connection unanswered")
    p.add_argument("--healthy-after", type=int, help="no faults after this many requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-tokens", type=int, default=48, help="length of plain-text answers")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    faults = Faults(latency=args.latency, jitter=args.jitter, fail_rate=args.fail_rate,
                    fail_status=args.status, rate_limit_rate=args.rate_limit_rate,
                    retry_after=args.retry_after, hang_rate=args.hang_rate, hang_s=args.hang_s,
                    down=args.down, healthy_after=args.healthy_after, seed=args.seed,
                    text_tokens=args.text_tokens)
    server = OpenAIDouble(faults, port=args.port, model=args.model)

    async def serve() -> None:
        print(await server.start_async(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop_async()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
