"""Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp's server, OpenAI itself).

(No distilabel Step is defined here, so `from __future__ import annotations` is safe.)
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

import httpx
from distilabel.models.llms import OpenAILLM
from pydantic import PrivateAttr, validate_call

from steps.errors import UserError
from steps.llms.base import Generation, Prompt, as_prompt, engine_output, generation_seed
from steps.llms.concurrency import SERVER_DEFAULT, SlotGate
from steps.llms.resilience import CircuitBreaker, RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from steps.engines import EngineSpec


def _why(error: httpx.HTTPError) -> str:
    """A transport error in a few words (the exception text can name the whole request)."""
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        cause = str(error).lower()
        return "connection refused" if "refused" in cause else "cannot connect"
    return type(error).__name__


class OpenAICompatibleEngine(OpenAILLM):
    """A server spoken to through the `openai` client, resilient to the faults of real servers.

    Per-input JSON schemas go out as `response_format` (the server compiles them to a grammar
    where it can) instead of distilabel's instructor path, which needs one schema per LLM. The
    standard form is `json_schema`; servers that only know llama.cpp's `json_object` + `schema`
    form reject it on the first try, and the engine then uses that form for the rest of the run.

    Failures never raise: transient ones (429 with its Retry-After, 5xx, timeouts, resets) are
    retried here (`steps.llms.resilience`; the client's own retries are off so that every retry
    is counted), and what still fails comes back in the output's `errors` with its reason.
    """

    max_retries: int = 0  # the openai client's: retries are ours (`retry`)
    request_retries: int = 6  # per request, after the first attempt, transient failures only
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    breaker_threshold: int = 8  # transient failures in a row that pause every request
    breaker_pause_s: float = 20.0
    breaker_deadline_s: float = 600.0  # failing this long without an answer: give up
    timeout: float = 120.0  # seconds per HTTP attempt (`--request-timeout`); then a retry
    max_concurrency: int = SERVER_DEFAULT  # this process's connection pool (`--max-concurrency`)
    _gate: SlotGate | None = PrivateAttr(default=None)  # the run's shared slots, if any
    _schema_form: str | None = PrivateAttr(default=None)  # unknown until the first schema call
    _breaker: CircuitBreaker | None = PrivateAttr(default=None)
    _retry: RetryPolicy = PrivateAttr(default_factory=RetryPolicy)

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None,
                  generation: dict[str, Any]) -> OpenAICompatibleEngine:
        """The engine of a parsed spec (`steps.engines.build_llm`); the key from OPENAI_API_KEY."""
        return cls(model=spec.model, base_url=spec.base_url,
                   api_key=os.environ.get("OPENAI_API_KEY", "no-key"),
                   generation_kwargs=generation)

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """GET {base_url}/models: the server answers and knows the model.

        Raises:
            UserError: no answer, an error status, or the model is not served (the message names
            the URL, never the key).
        """
        url = str(spec.base_url).rstrip("/")
        headers = {}
        if key := os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {key}"
        try:
            answer = httpx.get(f"{url}/models", headers=headers, timeout=timeout_s)
        except httpx.HTTPError as error:
            raise UserError(f"no server answers at {url} ({_why(error)}); start it or fix the "
                            "URL") from None
        if answer.status_code in (401, 403):
            raise UserError(f"{url} refuses the key (HTTP {answer.status_code}); set "
                            "OPENAI_API_KEY") from None
        if answer.status_code != 200:
            raise UserError(f"{url}/models answers HTTP {answer.status_code}; is this the "
                            "OpenAI-compatible base URL (usually ending in /v1)?")
        try:
            served = [model["id"] for model in answer.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{url}/models does not answer an OpenAI model list; is this the "
                            "OpenAI-compatible base URL?") from None
        if served and spec.model not in served:
            shown = ", ".join(served[:5]) + (" …" if len(served) > 5 else "")
            raise UserError(f"{url} does not serve model {spec.model!r} (it serves: {shown})")

    def share_slots(self, semaphore: Any) -> None:
        """Take a slot of `semaphore` for each HTTP attempt (None: no limit).

        The semaphore is shared by every step process (steps.llms.concurrency), so the run's
        requests in flight to this server stay ≤ its size.
        """
        self._gate = SlotGate(semaphore) if semaphore is not None else None

    def load(self) -> None:
        """Load the client with a connection pool of `max_concurrency` and the breaker."""
        from openai import AsyncOpenAI, DefaultAioHttpClient

        super().load()
        # aiohttp under the openai client, not httpx: with hundreds of requests in flight httpx's
        # connection pool costs ~19 ms of CPU per request, which capped a 2-core client at
        # ~50 requests/s; aiohttp costs ~1.5 ms (openai's own DefaultAioHttpClient, the
        # transport it recommends for concurrency). The pool is the size of the requests allowed
        # in flight, so connections are reused.
        limits = httpx.Limits(max_connections=self.max_concurrency,
                              max_keepalive_connections=self.max_concurrency)
        self._aclient = AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key.get_secret_value(),
            max_retries=self.max_retries, timeout=self.timeout,
            default_headers=self.default_headers,
            http_client=DefaultAioHttpClient(limits=limits, timeout=self.timeout))
        self._breaker = CircuitBreaker(
            label=re.sub(r"//[^/@]*@", "//", str(self.base_url)),  # log lines: no user:key@
            threshold=self.breaker_threshold,
            pause_s=self.breaker_pause_s, deadline_s=self.breaker_deadline_s,
            log=self._logger.warning)
        self._retry = RetryPolicy(self.request_retries, self.backoff_base_s, self.backoff_max_s)

    def unload(self) -> None:
        """Close the client's connections (aiohttp warns about a session left open), then drop it."""
        loop = self._event_loop
        if self._aclient is not None and loop is not None and not loop.is_closed() \
                and not loop.is_running():
            loop.run_until_complete(self._aclient.close())
        super().unload()

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self._schema_form == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}

    async def _create(self, prompt: Prompt, **sampling: Any) -> Any:
        from openai import APIStatusError

        if isinstance(prompt.messages, str):  # raw prompt: the completions endpoint
            return await self._aclient.completions.create(prompt=prompt.messages, **sampling)
        if prompt.schema is None:
            return await self._aclient.chat.completions.create(messages=prompt.messages,
                                                               **sampling)
        if self._schema_form is not None:
            return await self._aclient.chat.completions.create(
                messages=prompt.messages, response_format=self._response_format(prompt.schema),
                **sampling)
        try:  # probe once which form the server takes
            done = await self._aclient.chat.completions.create(
                messages=prompt.messages, response_format=self._response_format(prompt.schema),
                **sampling)
        except APIStatusError as error:  # naming the field: 400/422, or 500 from llama.cpp's server
            if "response_format" not in str(error):
                raise
            self._schema_form = "json_object"
            return await self._create(prompt, **sampling)
        self._schema_form = "json_schema"
        return done

    async def _generate_one(self, prompt: Prompt, sampling: dict[str, Any]) -> Generation:
        assert self._breaker is not None, "load() first"

        async def attempt() -> Any:
            if self._gate is None:
                return await self._create(prompt, **sampling)
            async with self._gate.slot():
                return await self._create(prompt, **sampling)

        done, retries, error = await call_with_retries(attempt, self._retry, self._breaker)
        if error is not None:
            return Generation(retries=retries, error=error)
        choice = done.choices[0]
        text = choice.text if isinstance(prompt.messages, str) else choice.message.content
        usage = done.usage
        return Generation(text, usage.prompt_tokens if usage else 0,
                          usage.completion_tokens if usage else 0, retries)

    @validate_call
    async def agenerate(  # type: ignore[override] - named sampling settings instead of **kwargs
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
        """`num_generations` for one input; see `steps.llms.base` for inputs and outputs.

        `top_k` and `repeat_penalty` are not in OpenAI's API; vLLM, llama.cpp and TGI servers
        read them from the body (as `top_k`, `repetition_penalty`) when given.
        """
        prompt = as_prompt(input)
        extra = {k: v for k, v in (("top_k", top_k), ("repetition_penalty", repeat_penalty))
                 if v is not None}
        sampling = {"model": self.model, "max_tokens": max_new_tokens,
                    "temperature": temperature, "top_p": top_p, "stop": stop,
                    **({"extra_body": extra} if extra else {})}
        return engine_output(list(await asyncio.gather(*(
            self._generate_one(prompt, {**sampling, "seed": generation_seed(prompt, i, seed)})
            for i in range(num_generations)))))
