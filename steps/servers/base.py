"""One managed inference server per run: start, health wait, log file, one-line failures, stop.

The pattern is datatrove's (`pipeline/inference/servers/base.py`): the pipeline starts the server
itself on a free port, polls it until it answers, and owns its lifetime; every LLM step then talks
to it through the OpenAI-compatible engine at `base_url`. One class per server kind supplies the
command line and the health path.

    with LlamaCppServer("model.gguf", run_dir) as server:
        llm = build_llm(server.engine_spec)   # openai:<name>@http://127.0.0.1:<port>/v1
        ...
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, ClassVar, Self

from steps.errors import UserError
from steps.publish.scrub import scrub_text

# Environment variables that hold storage credentials; scrubbed from log lines besides the ones
# steps.publish.scrub knows (the server inherits the run's environment).
_STORAGE_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# An absolute POSIX path not inside a URL (`http://host/v1` is kept): replaced by its last part.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/[\w.@+~-]+)+/([\w.@+~-]*)")
_TAIL_LINES = 5
_TAIL_LINE_CHARS = 240


class ServerError(UserError):
    """A managed server failed to start, stopped answering or exited; one line, printable as is."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now on `host` (the OS picks it).

    A tiny race remains until the server binds it; a lost race shows up as the server exiting
    with 'address in use'.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def scrub_line(line: str) -> str:
    """A log line fit for an error message: secrets redacted, absolute paths cut short.

    An absolute path keeps only its last part (a user's home or a model folder says nothing a
    reader needs).
    """
    extra = [v for name in _STORAGE_SECRETS if len(v := os.environ.get(name, "")) >= 8]
    return _ABSOLUTE_PATH.sub(r"\1", scrub_text(line, extra))


# Looked up here, not in the child: loading a library between fork and exec can deadlock.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL.

    So a killed run does not leave a model server holding the GPU or CPU.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedServer(ABC):
    """An OpenAI-compatible inference server run as a child process for the length of a run.

    Use it as a context manager (or call `start()` and `stop()`). The server runs in its own
    process group, so `stop()` ends it and every process it spawned (SIGTERM to the group, then
    SIGKILL after `stop_timeout`). Its stdout and stderr are appended to `<log_dir>/<log_name>`.

    Failures are raised as `ServerError` (a `UserError`, so `cli_main` prints one line): the server
    exiting while it starts or serves, or not answering its health path within `startup_timeout`;
    the message ends with the last lines of the server's log, scrubbed of secrets and absolute
    paths. A crash while serving is seen by a watcher thread, which calls `on_crash` (e.g. to stop
    the pipeline early) and makes `check()` and leaving the `with` block raise.

    The server process gets SIGTERM if the process that started it dies (Linux), so start it from
    the thread that outlives it (the main thread).

    Args:
        model: what the server loads (a path or a model id); only its last part is ever shown.
        log_dir: a local folder (the server runs on this node) for the log file; created.
        host: the interface to bind. 127.0.0.1 by default; on a multi-node Ray cluster bind the
            node's address so that actors on other nodes reach it.
        startup_timeout: seconds to wait for the health path to answer 200.
        stop_timeout: seconds between SIGTERM and SIGKILL when stopping.
        extra_args: appended to the command line as given (the server's own options).
        on_crash: called once, from the watcher thread, with the error if the server exits
            while serving (not when `stop()` ends it).
    """

    kind: ClassVar[str]  # the engine-spec prefix: llamacpp-server, vllm, sglang
    health_path: ClassVar[str] = "/v1/models"
    # Variables the server would read instead of its command line (removed from its environment).
    shadowing_env: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: str,
        log_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 600.0,
        stop_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        on_crash: Callable[[ServerError], None] | None = None,
    ) -> None:
        """Configure the server (see the class's Args); nothing starts before `start()`."""
        self.model = model
        self.log_path = Path(log_dir) / f"server-{self.kind}.log"
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = list(extra_args)
        self.on_crash = on_crash
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log: IO[bytes] | None = None
        self._stopping = threading.Event()
        self._crash: ServerError | None = None
        self._watcher: threading.Thread | None = None

    # -- what a kind supplies -------------------------------------------------------------------

    @abstractmethod
    def command(self, port: int) -> list[str]:
        """The command line that serves `self.model` on `self.host`:`port`."""

    @property
    def model_name(self) -> str:
        """The model name requests send and responses carry (the server is told to use it)."""
        return self.model

    @abstractmethod
    def check_installed(self) -> None:
        """Raise `UserError` naming the extra to install when the server software is missing."""

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. `http://127.0.0.1:41234/v1`."""
        if self.port is None:
            raise RuntimeError(f"{self.kind} server not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def engine_spec(self) -> str:
        """The `openai:MODEL@BASE_URL` engine spec that reaches this server."""
        return f"openai:{self.model_name}@{self.base_url}"

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the server last started (kept after it stopped), None before."""
        return self._pid

    def environment(self) -> dict[str, str]:
        """The server's environment: this process's, less `shadowing_env`, with OMP threads passive."""
        env = {k: v for k, v in os.environ.items() if k not in self.shadowing_env}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # steps.engines: spinning threads starve others
        return env

    def start(self) -> Self:
        """Start the server and wait until its health path answers.

        Raises:
            UserError: the server software is missing (from `check_installed`).
            ServerError: the server exited, or did not answer within `startup_timeout` (it is
                stopped first).
        """
        if self._process is not None:
            raise RuntimeError(f"{self.kind} server already started")
        self.check_installed()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host)
        self._stopping.clear()
        self._crash = None
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"--- {self.kind} on port {self.port} ---\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(
            self.command(self.port), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._pid = self._process.pid
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name=f"{self.kind}-watch", daemon=True)
        self._watcher.start()
        return self

    def _health(self) -> bool:
        url = f"http://{self.host}:{self.port}{self.health_path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self._error(f"exited with status {self._process.returncode} while starting")
            if self._health():
                return
            time.sleep(0.5)
        raise self._error(f"did not answer GET {self.health_path} within {self.startup_timeout:g} s")

    def _watch(self) -> None:
        assert self._process is not None
        returncode = self._process.wait()
        if self._stopping.is_set():
            return
        self._crash = self._error(f"exited with status {returncode} while serving")
        if self.on_crash is not None:
            self.on_crash(self._crash)

    def check(self) -> None:
        """Raise the `ServerError` of a crash while serving, if there was one.

        Raises:
            ServerError: the server exited on its own after it had started.
        """
        if self._watcher is not None and not self.running:
            self._watcher.join(timeout=5)  # the watcher records a crash right after the exit
        if self._crash is not None:
            raise self._crash

    def stop(self) -> None:
        """End the server and everything it spawned; safe to call twice."""
        self._stopping.set()
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_timeout)
            # Also ends children that outlived the leader (vLLM's engine cores, SGLang's workers).
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            _wait_group_gone(process.pid, self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        """Start the server (see `start()`)."""
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Stop the server; raise its `ServerError` if it crashed while serving.

        Raises:
            ServerError: the server exited on its own while serving (only when the block itself
                raised nothing).
        """
        crash = self._crash
        self.stop()
        if crash is not None and exc_type is None:
            raise crash

    # -- reporting ------------------------------------------------------------------------------

    def _error(self, what: str) -> ServerError:
        tail = " | ".join(self.log_tail())
        shown = Path(self.model).name or self.model
        return ServerError(
            f"engine '{self.kind}:{shown}': the server {what}; last lines of {self.log_path.name} "
            f"(in the run folder): {tail or '(empty)'}"
        )

    def log_tail(self, lines: int = _TAIL_LINES) -> list[str]:
        """The last non-empty lines of the server log, scrubbed, each cut to a readable length."""
        if self._log is not None:
            self._log.flush()
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return [scrub_line(line)[:_TAIL_LINE_CHARS] for line in kept]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the server leads its own session, so its group id is its pid


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait until no process of the group exists (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def command_options(options: Mapping[str, object]) -> list[str]:
    """Server options as command-line arguments.

    `{"max-model-len": 4096, "enforce-eager": True}` gives `--max-model-len 4096
    --enforce-eager`; None and False leave the option out.
    """
    args: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        args.append(f"--{name}")
        if value is not True:
            args.append(str(value))
    return args
