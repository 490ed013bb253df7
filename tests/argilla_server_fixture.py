"""A real argilla-server 2.8 on loopback for the review tests, started and stopped by a fixture.

The fixture starts Debian's redis-server, migrates a fresh SQLite database and creates the owner
user with a random API key through the server's own CLI, then starts the API server and one rq
worker, waits until the API answers, and stops all of them afterwards. Everything runs from the
server venv `.venv-argilla-server/` that `.ci/install-argilla-server.sh` makes (the server's CLI
needs click<8.2, which the project venv cannot have next to huggingface_hub 2.x).

TEST-ONLY SEARCH ENGINE: Elasticsearch and OpenSearch cannot be installed on these machines, so
the server and the worker run with the do-nothing engine of `tests/argilla_search_engine.py`.
Index writes are dropped; search, filters, sorting, similarity, metadata metrics and progress
answer 501. The review code reads records from the database only, so it is tested for real, and
a test that strayed onto a search-backed endpoint would fail rather than pass on fake answers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import argilla as rg
import httpx
import pytest

from steps import REPO_ROOT

SERVER_VENV = REPO_ROOT / ".venv-argilla-server"
ENGINE_MODULE = Path(__file__).with_name("argilla_search_engine.py")
WORKSPACE = "argilla"  # the owner's workspace made by `database users create_default`
START_TIMEOUT_S = 120


@dataclass
class ArgillaServer:
    url: str
    api_key: str = field(repr=False)  # the owner's; kept out of reprs (and so of test reports)
    workspace: str = WORKSPACE
    _annotators: dict[str, str] = field(default_factory=dict, repr=False)

    def owner(self) -> rg.Argilla:
        return rg.Argilla(api_url=self.url, api_key=self.api_key)

    def annotator(self, username: str) -> rg.Argilla:
        """A client logged in as annotator `username` of the workspace (created on first use)."""
        if username not in self._annotators:
            owner = self.owner()
            user = rg.User(username=username, password=secrets.token_hex(8), role="annotator",
                           client=owner).create()
            owner.workspaces(self.workspace).add_user(user)
            # the SDK's User has no api_key attribute; the server's user resource carries it
            key = owner.api.http_client.get(f"/api/v1/users/{user.id}").json()["api_key"]
            self._annotators[username] = key
        return rg.Argilla(api_url=self.url, api_key=self._annotators[username])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _api_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/status", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"{what} did not start (exit {process.poll()}); log {log}:\n{tail}")
        time.sleep(0.25)


def _stop(process: subprocess.Popen) -> None:
    """Stop a process started here, with the children it forked (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", name="argilla_server")
def argilla_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgillaServer]:
    python = SERVER_VENV / "bin" / "python"
    missing = [what for what, ok in [(f"{python}", python.exists()),
                                     ("redis-server", shutil.which("redis-server"))] if not ok]
    if missing:
        reason = f"{', '.join(missing)} missing: run `bash .ci/install-argilla-server.sh`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Argilla tests: {reason}")
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("argilla")
    redis_port, api_port = _free_port(), _free_port()
    api_key, url = secrets.token_urlsafe(24), f"http://127.0.0.1:{api_port}"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ARGILLA_HOME_PATH": str(home),
           "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "ARGILLA_SEARCH_ENGINE": "test-null", "ARGILLA_AUTH_SECRET_KEY": secrets.token_hex(32),
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str | Path) -> tuple[subprocess.Popen, Path]:
        log = home / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(c) for c in command], env=env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        processes.append(process)
        return process, log

    def database(*command: str) -> None:
        """The server's own CLI (`python -m argilla_server database …`), which needs click<8.2."""
        done = subprocess.run([str(python), "-m", "argilla_server", "database", *command],
                              env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode:
            pytest.fail(f"argilla_server database {command[0]} failed:\n{done.stderr[-3000:]}")

    try:
        redis, log = start("redis", "redis-server", "--bind", "127.0.0.1", "--port",
                           str(redis_port), "--save", "", "--appendonly", "no", "--dir", home)
        _wait_for(lambda: _redis_answers(redis_port), redis, log, "redis-server")
        database("migrate")
        # -P: keep tests/ off sys.path so that `argilla_server` is the installed package
        server, log = start("server", python, "-P", ENGINE_MODULE, "server", "127.0.0.1",
                            str(api_port))
        start("worker", python, "-P", ENGINE_MODULE, "worker")
        database("users", "create_default", "--api-key", api_key, "--password",
                 secrets.token_hex(8), "--quiet")  # while the server starts
        _wait_for(lambda: _api_answers(url), server, log, "argilla-server")
        yield ArgillaServer(url=url, api_key=api_key)
    finally:
        for process in reversed(processes):
            _stop(process)
