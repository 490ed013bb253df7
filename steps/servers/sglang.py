"""`sglang:MODEL`: one SGLang server per run, reached through the OpenAI-compatible engine.

UNTESTED here: SGLang cannot be installed on the project's machines, so only the command line
this class builds is unit-tested. The lifecycle around it is the base class's, which the
`llamacpp-server:` tests run end to end. Whether `sglang.launch_server` accepts these options on
a given SGLang version, and its load time, is not tested.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from typing_extensions import override

from steps.errors import UserError
from steps.servers.base import ManagedServer, command_options


class SGLangServer(ManagedServer):
    """`python -m sglang.launch_server --model-path MODEL --host H --port P`.

    `/health` answers 200 once the model is loaded. Flags follow datatrove's `SGLangServer`
    (`pipeline/inference/servers/`).

    Args:
        model: a Hub model id or a local model folder.
        log_dir: local folder for `server-sglang.log`.
        tp_size: GPUs the model is split over (`--tp-size`).
        context_length: context window (`--context-length`; None: the model's).
        **options: see `ManagedServer`; `extra_args` are passed to the launcher as given.
    """

    kind = "sglang"
    health_path = "/health"

    def __init__(self, model: str, log_dir: str | Path, *, tp_size: int = 1,
                 context_length: int | None = None, **options: Any) -> None:
        """Configure the server (see the class's Args); nothing starts before `start()`."""
        super().__init__(model, log_dir, **options)
        self.tp_size = tp_size
        self.context_length = context_length

    @override
    def check_installed(self) -> None:
        if importlib.util.find_spec("sglang") is None:
            raise UserError("engine 'sglang:…': install SGLang (pip install 'sglang[all]')")

    @override
    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "sglang.launch_server", "--model-path", self.model,
            "--host", self.host, "--port", str(port),
            *command_options({"tp-size": self.tp_size if self.tp_size > 1 else None,
                              "context-length": self.context_length}),
            *self.extra_args,
        ]
