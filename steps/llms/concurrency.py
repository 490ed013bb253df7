"""Requests in flight per server, shared by every step process of a run (`--max-concurrency`).

distilabel runs each step in its own process and an async LLM gathers the requests of one input
batch at a time (docs/reference: scale.md §2), so neither a per-step limit nor a batch size can
keep a server at N requests: the steps of a chain are busy at different times. Instead every step
gets batches large enough to fill the server on its own (`items_per_batch`), and one semaphore
per server, living in a `multiprocessing.Manager` started by the recipe's process, caps the sum
of all steps at N. A slot is held for one HTTP attempt only: backoff sleeps hold none.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from multiprocessing.managers import SyncManager
from typing import Any

from steps.engines import EngineSpec

SERVER_DEFAULT = 64  # requests in flight per server unless --max-concurrency says otherwise
LOCAL_DEFAULT = 1  # an embedded / llama.cpp engine decodes one request at a time


def default_concurrency(spec: str) -> int:
    """The engine's `--max-concurrency` when none is given: 64 for a server, 1 for local."""
    return SERVER_DEFAULT if EngineSpec.parse(spec).base_url is not None else LOCAL_DEFAULT


def items_per_batch(batch_size: int, max_concurrency: int, specs: Iterable[str]) -> int:
    """Work items per distilabel batch for a run's engines.

    At least `batch_size`, and for server engines at least `max_concurrency`, so that one step's
    batch (≥ 1 request per item) can fill the server. Bigger batches measured better than
    N ÷ 2 (benchmarks/server_concurrency.py): each step still overlaps the next one's batch.
    """
    if any(EngineSpec.parse(s).base_url is not None for s in specs):
        return max(batch_size, max_concurrency)
    return batch_size


class ServerSlots:
    """One cross-process semaphore of `max_concurrency` slots per distinct server URL.

    Use as a context manager in the recipe's process, before the pipeline starts its step
    processes; `for_spec(spec)` gives the semaphore to hand to that engine (None: not a server).
    """

    def __init__(self, specs: Iterable[str], max_concurrency: int) -> None:
        """Slots for the servers among the engine `specs`, `max_concurrency` each."""
        self._urls = sorted({str(e.base_url) for e in map(EngineSpec.parse, specs)
                             if e.base_url is not None})
        self.max_concurrency = max_concurrency
        self._manager: SyncManager | None = None
        self._slots: dict[str, Any] = {}

    def __enter__(self) -> ServerSlots:
        """Start the manager process that holds the semaphores (only when a server is used)."""
        if self._urls:
            self._manager = multiprocessing.Manager()
            self._slots = {url: self._manager.BoundedSemaphore(self.max_concurrency)
                           for url in self._urls}
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the manager process."""
        if self._manager is not None:
            self._manager.shutdown()
        self._manager, self._slots = None, {}

    def serve(self, llm: Any, spec: str | EngineSpec, timeout_s: float | None = None,
              retries: int | None = None) -> Any:
        """Set `llm` (built by steps.engines.build_llm from `spec`) to this run's serving.

        The slots, pool size, request timeout (seconds per HTTP attempt) and retries per request when it talks
        to a server; any other engine is returned unchanged.
        """
        if hasattr(llm, "share_slots"):
            llm.max_concurrency = self.max_concurrency
            if timeout_s is not None:
                llm.timeout = timeout_s
            if retries is not None:
                llm.request_retries = retries
            llm.share_slots(self.for_spec(spec))
        return llm

    def for_spec(self, spec: str | EngineSpec) -> Any:
        """The shared semaphore of this engine's server, or None for a local engine."""
        engine = spec if isinstance(spec, EngineSpec) else EngineSpec.parse(spec)
        return self._slots.get(str(engine.base_url)) if engine.base_url is not None else None


class SlotGate:
    """Awaitable access to a shared (blocking, cross-process) semaphore from one event loop.

    Only one coroutine per process waits on the shared semaphore, in a worker thread; the others
    queue on a local asyncio lock, so a process never ties up more than one thread waiting.
    """

    def __init__(self, semaphore: Any) -> None:
        """A gate to `semaphore` (a manager proxy of a BoundedSemaphore)."""
        self._semaphore = semaphore
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> SlotGate:
        """A gate to the same semaphore."""
        # distilabel deep-copies each step before starting it; a copy must share the slots
        # (a manager proxy's own deepcopy would fetch the semaphore itself, which cannot move).
        return SlotGate(self._semaphore)

    def __getstate__(self) -> dict[str, Any]:
        """The semaphore only (an asyncio lock belongs to one process's loop)."""
        return {"_semaphore": self._semaphore, "_lock": None, "_loop": None}

    def _local_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:  # distilabel may make a new loop
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body."""
        async with self._local_lock():
            await asyncio.to_thread(self._semaphore.acquire)
        try:
            yield
        finally:
            self._semaphore.release()
