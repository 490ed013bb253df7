"""`vllm:MODEL`: one `vllm serve` per run, reached through the OpenAI-compatible engine.

UNTESTED here: vLLM cannot be installed on the project's machines, so only the command line this
class builds is unit-tested. The lifecycle around it (free port, health wait, log file, one-line
failures, stop of the whole process group) is the base class's, which the `llamacpp-server:`
tests run end to end. Whether `vllm serve` accepts these options on a given vLLM version, and how
long it takes to load a model (`startup_timeout`), is not tested.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from typing_extensions import override

from steps.errors import UserError
from steps.servers.base import ManagedServer, command_options


class VLLMServer(ManagedServer):
    """`vllm serve MODEL --host H --port P` (vLLM's OpenAI-compatible server, extra `[vllm]`).

    The model is served under the name given (vLLM's default), and `/health` answers 200 once the
    engine has loaded. Flags follow datatrove's `VLLMServer` (`pipeline/inference/servers/`).

    Args:
        model: a Hub model id or a local model folder.
        log_dir: local folder for `server-vllm.log`.
        tensor_parallel_size: GPUs the model is split over (`--tensor-parallel-size`).
        max_model_len: context window (`--max-model-len`; None: the model's).
        gpu_memory_utilization: fraction of each GPU's memory vLLM may take (None: vLLM's 0.9).
        **options: see `ManagedServer`; `extra_args` are passed to `vllm serve` as given.
    """

    kind = "vllm"
    health_path = "/health"

    def __init__(self, model: str, log_dir: str | Path, *, tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                 **options: Any) -> None:
        """Configure the server (see the class's Args); nothing starts before `start()`."""
        super().__init__(model, log_dir, **options)
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization

    def executable(self) -> str | None:
        """`vllm` next to this interpreter (a venv not on PATH) or on PATH."""
        beside = Path(sys.executable).with_name("vllm")
        return str(beside) if beside.is_file() else shutil.which("vllm")

    @override
    def check_installed(self) -> None:
        if self.executable() is None:
            raise UserError("engine 'vllm:…': install the extra: pip install -e '.[vllm]'")

    @override
    def environment(self) -> dict[str, str]:
        env = super().environment()
        # As datatrove does: keep transformers from importing TensorFlow (tens of seconds).
        env.setdefault("USE_TF", "0")
        env.setdefault("TRANSFORMERS_NO_TF", "1")
        return env

    @override
    def command(self, port: int) -> list[str]:
        return [
            self.executable() or "vllm", "serve", self.model, "--host", self.host, "--port", str(port),
            *command_options({
                "tensor-parallel-size": self.tensor_parallel_size if self.tensor_parallel_size > 1 else None,
                "max-model-len": self.max_model_len,
                "gpu-memory-utilization": self.gpu_memory_utilization,
            }),
            *self.extra_args,
        ]
