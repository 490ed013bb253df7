"""Retries with backoff and a circuit breaker for engines behind a server.

A server at scale answers some requests with 429 (rate limit), 5xx, a timeout or a reset
connection. Each request retries those itself, with exponential backoff and full jitter (AWS
Architecture Blog, "Exponential Backoff and Jitter", 2015), honouring `Retry-After`; errors the
request itself causes (400: e.g. a prompt longer than the context) come back at once. When
failures pile up across requests the breaker opens: every request of the engine waits instead of
hammering a server that is down, one log line says so, and the first answer closes it again.
Past a deadline without any answer, requests give up with `engine_error:unavailable` (NeMo Data
Designer #575: backing off silently for minutes, then producing nothing, is what users hit).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from steps.llms.base import CONNECTION, TIMEOUT, UNAVAILABLE, EngineError, engine_error

T = TypeVar("T")
TRANSIENT_STATUS = {408, 409, 425, 429}  # and every 5xx
MAX_RETRY_AFTER_S = 600.0  # a server's own Retry-After is honoured up to this


@dataclass(frozen=True)
class Failure:
    """A classified request failure."""

    error: EngineError
    transient: bool
    retry_after_s: float | None = None  # what the server asked for, if it did


def retry_after(headers: Any) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`, if present."""
    if headers is None:
        return None
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(error: Exception) -> Failure:
    """The reason, transience and requested delay of an exception from the `openai` client.

    Raises:
        Exception: `error` itself when it is not a request failure (a bug is not retried).
    """
    import openai

    if isinstance(error, openai.APITimeoutError):  # (a subclass of APIConnectionError)
        return Failure(engine_error(TIMEOUT, error), transient=True)
    if isinstance(error, openai.APIConnectionError):
        return Failure(engine_error(CONNECTION, error.__cause__ or error), transient=True)
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = error.message
        return Failure(engine_error(f"engine_error:{status}", message),
                       transient=status in TRANSIENT_STATUS or status >= 500,
                       retry_after_s=retry_after(error.response.headers))
    raise error


@dataclass
class CircuitBreaker:
    """Shared by all requests of one engine: pauses them all while the server keeps failing.

    Opens after `threshold` transient failures in a row (no success in between), for `pause_s`
    (doubling while it stays down, up to `max_pause_s`); a success closes it. Once it has been
    failing for `deadline_s` without an answer, `unavailable` is True and requests give up.
    """

    label: str  # how log lines name the server (its URL, no secrets)
    threshold: int = 8
    pause_s: float = 20.0
    max_pause_s: float = 120.0
    deadline_s: float = 600.0
    log: Callable[[str], None] = print
    consecutive: int = 0
    failing_since: float | None = None
    open_until: float = 0.0
    _next_pause: float = field(default=0.0, repr=False)

    def record_success(self) -> None:
        """An answer came back: close the breaker and reset its backoff."""
        if self.open_until:
            self.log(f"server {self.label} answers again — resuming")
        self.consecutive, self.failing_since, self.open_until, self._next_pause = 0, None, 0.0, 0.0

    def record_failure(self, failure: Failure) -> None:
        """A transient failure: count it, and open the breaker once `threshold` come in a row."""
        now = time.monotonic()
        self.consecutive += 1
        self.failing_since = self.failing_since or now
        if self.consecutive >= self.threshold and now >= self.open_until:
            pause = self._next_pause or self.pause_s
            self._next_pause = min(pause * 2, self.max_pause_s)
            self.open_until = now + pause
            self.log(f"server {self.label} failing ({failure.error['reason'].split(':')[-1]}) "
                     f"— retrying in {pause:g} s")

    @property
    def unavailable(self) -> bool:
        """True once the server has been failing for `deadline_s` seconds without an answer."""
        return (self.failing_since is not None
                and time.monotonic() - self.failing_since >= self.deadline_s)

    async def wait(self) -> None:
        """Until the breaker lets requests through again (at most until the deadline)."""
        while (delay := self.open_until - time.monotonic()) > 0 and not self.unavailable:
            await asyncio.sleep(min(delay, 1.0))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request retries transient failures."""

    max_retries: int = 6  # retries after the first attempt
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, retry: int, failure: Failure) -> float:
        """Seconds before retry number `retry` (1-based).

        What the server asked for (Retry-After, up to MAX_RETRY_AFTER_S), else exponential
        backoff with full jitter.
        """
        if failure.retry_after_s is not None:
            return min(failure.retry_after_s, MAX_RETRY_AFTER_S)
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)))


async def call_with_retries(
    request: Callable[[], Awaitable[T]], policy: RetryPolicy, breaker: CircuitBreaker
) -> tuple[T | None, int, EngineError | None]:
    """(result, retries made, None) or (None, retries made, the last error).

    Raises:
        Exception: whatever `request` raises that `classify` does not know (a bug, not a fault).
    """
    retries = 0
    while True:
        await breaker.wait()
        if breaker.unavailable:
            return None, retries, engine_error(
                UNAVAILABLE, f"server {breaker.label} failing for {breaker.deadline_s:g} s")
        try:
            result = await request()
        except Exception as error:  # noqa: BLE001 - classify re-raises what is not a fault
            failure = classify(error)
            if not failure.transient:  # the server answered: it is up, the request is wrong
                breaker.record_success()
                return None, retries, failure.error
            breaker.record_failure(failure)
            if retries >= policy.max_retries:
                return None, retries, failure.error
            retries += 1
            await asyncio.sleep(policy.delay(retries, failure))
            continue
        breaker.record_success()
        return result, retries, None
