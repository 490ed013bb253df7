"""Managed servers as engines: `llamacpp-server:PATH.gguf`, `vllm:MODEL`, `sglang:MODEL`.

A run starts ONE server per such spec before its pipeline (`serve_engines`, a context manager in
each recipe) and every LLM step of every process reaches it through the OpenAI-compatible engine,
raw prompts included (`/v1/completions`, so Magpie runs on vLLM too). This replaces loading the
model in every step process, and is how open-r1 runs distilabel (one vLLM server, clients only).

    with serve_engines([config.agent_llm, config.teacher], work):
        build_llm("vllm:Qwen/Qwen2.5-7B-Instruct")   # -> openai engine at the run's server

Where each spec is served is kept in the environment variable `GENTEACH_ENGINE_URLS` (JSON, spec
-> base URL), so that a fresh child process (Magpie's) builds the same engines; under Ray the
LLMs are built on the driver and carry their URL to the actors.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from distilabel.models.llms import LLM

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.llms.openai_compatible import OpenAICompatibleEngine
from steps.servers import ServerError, managed_server

ENGINE_URLS = "GENTEACH_ENGINE_URLS"


def _key(spec: EngineSpec) -> str:
    return f"{spec.kind}:{spec.model}"


def _served_name(spec: EngineSpec) -> str:
    """The model name the server answers to (llama-cpp-python's: the GGUF file name)."""
    return managed_server(spec.kind, spec.model, ".").model_name


def served_urls() -> dict[str, str]:
    """Spec (`kind:model`) -> base URL of the servers this run serves or reuses."""
    return json.loads(os.environ.get(ENGINE_URLS) or "{}")


class ServedEngine:
    """The engine-table class of the managed-server kinds.

    It builds an `OpenAICompatibleEngine` pointed at the run's server of the spec.
    """

    @classmethod
    def from_spec(cls, spec: EngineSpec, n_threads: int | None, generation: dict[str, Any]) -> LLM:
        """The OpenAI-compatible engine of the running server of `spec`.

        Raises:
            UserError: no server of this spec runs (the recipe did not start one).
        """
        url = served_urls().get(_key(spec))
        if url is None:
            raise UserError(f"engine '{spec.kind}:{Path(spec.model).name}': no server runs for it; "
                            "start the run through a recipe, or pass --engine-url")
        return OpenAICompatibleEngine.from_spec(EngineSpec("openai", _served_name(spec), url),
                                                n_threads, generation)

    @staticmethod
    def preflight(spec: EngineSpec, timeout_s: float) -> None:
        """The server software is installed, or (`--engine-url`) the reused server answers.

        Raises:
            UserError: the extra to install, the missing file, or the server not answering.
        """
        if url := served_urls().get(_key(spec)):
            OpenAICompatibleEngine.preflight(EngineSpec("openai", _served_name(spec), url), timeout_s)
        else:
            managed_server(spec.kind, spec.model, ".").check_installed()


def _interrupt(error: ServerError) -> None:
    """A server died while serving: stop the run now instead of retrying into a dead port.

    distilabel stops its pipeline on SIGINT; committed batches stay, a rerun redoes the rest.
    """
    os.kill(os.getpid(), signal.SIGINT)


def _served_specs(specs: Iterable[str | None]) -> list[EngineSpec]:
    parsed = [EngineSpec.parse(text) for text in dict.fromkeys(s for s in specs if s)]
    return [spec for spec in parsed if spec.engine_kind.served]


def reuse_engine_url(specs: Iterable[str | None], engine_url: str | None) -> None:
    """`--engine-url`: serve the managed-server specs of `specs` from the user's running server.

    The URL is set in `GENTEACH_ENGINE_URLS` for this process and its children. Call it before
    the preflight (`check_engine` then asks that server); nothing starts.
    """
    if engine_url:
        served = served_urls() | {_key(spec): engine_url.rstrip("/") for spec in _served_specs(specs)}
        os.environ[ENGINE_URLS] = json.dumps(served)


@contextmanager
def serve_engines(specs: Iterable[str | None], log_dir: str | Path,
                  **options: Any) -> Iterator[dict[str, str]]:
    """Start one managed server per distinct server spec in `specs`, for the block.

    Other kinds, and specs `reuse_engine_url` already points at a server, are skipped.

    Args:
        specs: engine specs of the run (None: unused option).
        log_dir: local folder for the servers' logs (`server-<kind>.log`, the run's `.work/`).
        **options: passed to each server (`steps.servers.ManagedServer`), e.g. `n_threads`.

    Yields:
        spec (`kind:model`) -> base URL, also set in `GENTEACH_ENGINE_URLS` for the block.

    Raises:
        ServerError: a server did not start, or crashed while serving (one line with the last
            lines of its log).
    """
    served = served_urls()
    previous = os.environ.get(ENGINE_URLS)
    servers = []
    with ExitStack() as stack:
        for spec in _served_specs(specs):
            if _key(spec) not in served:
                server = managed_server(spec.kind, spec.model, log_dir, on_crash=_interrupt, **options)
                servers.append(stack.enter_context(server))
                served[_key(spec)] = server.base_url
        os.environ[ENGINE_URLS] = json.dumps(served)
        try:
            yield served
        except KeyboardInterrupt:  # a crash interrupts the run: report the crash, not the interrupt
            for server in servers:
                server.check()
            raise
        finally:
            if previous is None:
                os.environ.pop(ENGINE_URLS, None)
            else:
                os.environ[ENGINE_URLS] = previous
