"""`llamacpp-server:PATH.gguf`: llama-cpp-python's own OpenAI-compatible server (extra `[server]`).

This is the kind the tests run end to end (start, health, chat and raw completions, crash, stop)
on the embedded SmolLM2 GGUF; the vLLM and SGLang kinds share everything but the command line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from typing_extensions import override

from steps.errors import UserError
from steps.servers.base import ManagedServer, command_options


class LlamaCppServer(ManagedServer):
    """`python -m llama_cpp.server --model PATH.gguf` on a free loopback port.

    The model is served under its file name (`--model_alias`), so responses and provenance never
    carry the local path. llama-cpp-python's server answers one request at a time; requests sent
    together queue in the server.

    Args:
        model: path of a GGUF file.
        log_dir: local folder for `server-llamacpp-server.log`.
        n_ctx: context window in tokens (llama-cpp-python's server default is 2048; ours matches
            `steps.engines.LlamaCppEngine`).
        n_threads: CPU threads for generation and prompt reading (None: llama.cpp's default).
        **options: see `ManagedServer` (host, startup_timeout, extra_args, on_crash…).

    Raises:
        UserError: the GGUF file does not exist (checked before anything starts).
    """

    kind = "llamacpp-server"
    health_path = "/v1/models"
    # uvicorn.run in llama_cpp/server/__main__.py reads HOST and PORT over the command line, and
    # CONFIG_FILE replaces the command line altogether.
    shadowing_env = ("HOST", "PORT", "CONFIG_FILE")

    def __init__(self, model: str, log_dir: str | Path, *, n_ctx: int = 4096,
                 n_threads: int | None = None, startup_timeout: float = 120.0, **options: Any) -> None:
        """Check the GGUF file and configure the server (see the class's Args and Raises)."""
        if not Path(model).is_file():
            raise UserError(f"engine 'llamacpp-server:{Path(model).name}': GGUF file not found")
        super().__init__(model, log_dir, startup_timeout=startup_timeout, **options)
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    @property
    @override
    def model_name(self) -> str:
        return Path(self.model).name

    @override
    def check_installed(self) -> None:
        if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
            raise UserError("engine 'llamacpp-server:…': install the extra: pip install -e '.[server]'")

    @override
    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", self.model,
            "--model_alias", self.model_name, "--host", self.host, "--port", str(port),
            *command_options({"n_ctx": self.n_ctx, "n_threads": self.n_threads,
                              "n_threads_batch": self.n_threads}),
            *self.extra_args,
        ]
