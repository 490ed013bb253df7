"""Managed inference servers: one per run, started and health-checked by the pipeline itself.

Engine specs (the server kinds):

- `llamacpp-server:PATH.gguf`: llama-cpp-python's server (extra `[server]`); tested end to end.
- `vllm:MODEL`: `vllm serve` (extra `[vllm]`); command line tested only.
- `sglang:MODEL`: SGLang's launcher; command line tested only.

Use: `with managed_server("llamacpp-server", "model.gguf", run_dir) as server:` then
`llm = build_llm(server.engine_spec)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps.servers.base import ManagedServer, ServerError, free_port
from steps.servers.llamacpp_server import LlamaCppServer
from steps.servers.sglang import SGLangServer
from steps.servers.vllm import VLLMServer

__all__ = ["SERVER_KINDS", "LlamaCppServer", "ManagedServer", "SGLangServer", "ServerError",
           "VLLMServer", "free_port", "managed_server"]

SERVER_KINDS: dict[str, type[ManagedServer]] = {
    cls.kind: cls for cls in (LlamaCppServer, VLLMServer, SGLangServer)
}


def managed_server(kind: str, model: str, log_dir: str | Path, **options: Any) -> ManagedServer:
    """The (not yet started) server of an engine kind.

    Raises:
        ValueError: `kind` is not a server kind.
        UserError: the model is missing (llamacpp-server).
    """
    if kind not in SERVER_KINDS:
        raise ValueError(f"{kind!r} is not a server kind; one of {', '.join(SERVER_KINDS)}")
    return SERVER_KINDS[kind](model, log_dir, **options)
