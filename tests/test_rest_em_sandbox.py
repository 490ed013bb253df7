"""ReST-EM code reward: the sandbox runs tests, and contains hostile candidates as failures.

Each hostile candidate's tests pass only if its attack works, so a "pass" would mean the
sandbox let it through. Every isolation mode this machine supports is tested.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.errors import UserError
from steps.rest_em.sandbox import NAMESPACES, CodeSandbox, SandboxLimits, isolation_mode

LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=4.0, memory_mb=256, file_mb=1, processes=8)


def _available_modes() -> list[str]:
    try:
        preferred = isolation_mode()
    except UserError:
        return []
    modes = [preferred]
    probe = subprocess.run(["unshare", "--user", "--map-root-user", *NAMESPACES, "true"],
                           capture_output=True)
    if preferred == "root" and probe.returncode == 0:
        modes.append("userns")
    return modes


MODES = _available_modes()
pytestmark = pytest.mark.skipif(not MODES, reason="no Linux namespaces (unshare) on this machine")


@pytest.fixture(params=MODES, scope="module")
def sandbox(request: pytest.FixtureRequest) -> CodeSandbox:
    return CodeSandbox(LIMITS, mode=request.param)


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[int]:
    """A TCP server on the host's loopback that answers every connection."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.sendall(b"hello")
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_correct_candidate_passes_assert_tests(sandbox: CodeSandbox) -> None:
    assert sandbox("def add(a, b):\n    return a + b", "assert add(2, 3) == 5") == ("pass", "")


def test_wrong_candidate_fails_assert_tests(sandbox: CodeSandbox) -> None:
    verdict, detail = sandbox("def add(a, b):\n    return a - b", "assert add(2, 3) == 5")
    assert verdict == "fail" and "AssertionError" in detail


def test_stdin_stdout_cases_all_must_pass(sandbox: CodeSandbox) -> None:
    program = "a, b = map(int, input().split())\nprint(a + b if a < 100 else 0)"
    good = [{"input": "1 2\n", "output": "3\n"}, {"input": "20 22", "output": "42"}]
    assert sandbox(program, good)[0] == "pass"
    verdict, detail = sandbox(program, [*good, {"input": "100 1", "output": "101"}])
    assert verdict == "fail" and detail.startswith("case 3")


def test_infinite_loop_hits_the_cpu_limit(sandbox: CodeSandbox) -> None:
    assert sandbox("while True:\n    pass", "assert True")[0] == "timeout"


def test_sleeping_forever_hits_the_wall_clock_limit(sandbox: CodeSandbox) -> None:
    verdict, detail = sandbox("import time\ntime.sleep(600)", "assert True")
    assert verdict == "timeout" and "wall clock" in detail


def test_fork_bomb_is_contained(sandbox: CodeSandbox) -> None:
    bomb = ("import os\nchildren = 0\nwhile True:\n    try:\n        os.fork()\n"
            "        children += 1\n    except OSError:\n        break\n")
    # Passing would need more processes than RLIMIT_NPROC allows (or any fork, under the hook).
    verdict, _ = sandbox(bomb, f"assert children > {LIMITS.processes * 4}")
    assert verdict in ("fail", "timeout")
    assert sandbox("print('still works')", "assert True")[0] == "pass"


def test_memory_bomb_fails(sandbox: CodeSandbox) -> None:
    verdict, detail = sandbox("blob = bytearray(4 * 1024**3)", "assert len(blob) > 0")
    assert verdict == "fail" and "MemoryError" in detail


def test_no_network_not_even_host_loopback(sandbox: CodeSandbox, loopback_server: int) -> None:
    with socket.create_connection(("127.0.0.1", loopback_server)) as probe:  # reachable here
        assert probe.recv(5) == b"hello"
    program = ("import socket\ntry:\n    with socket.create_connection(('127.0.0.1', "
               f"{loopback_server}), timeout=2) as s:\n        got = s.recv(5)\n"
               "except OSError:\n    got = b''\n")
    assert sandbox(program, "assert got == b'hello'")[0] == "fail"


def test_writing_outside_its_directory_fails(sandbox: CodeSandbox, tmp_path: Path) -> None:
    targets = [tmp_path / "escaped.txt", Path("/tmp") / f"rest-em-escape-{os.getpid()}",
               Path.home() / f"rest-em-escape-{os.getpid()}"]
    program = ("written = 0\nfor path in " + repr([str(t) for t in targets]) + ":\n"
               "    try:\n        open(path, 'w').write('x')\n        written += 1\n"
               "    except OSError:\n        pass\nopen('inside.txt', 'w').write('ok')\n")
    assert sandbox(program, "assert written > 0")[0] == "fail"
    assert not any(target.exists() for target in targets)
    assert sandbox(program, "assert open('inside.txt').read() == 'ok'")[0] == "pass"


def test_environment_secrets_are_not_visible(sandbox: CodeSandbox,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_rest_em_test_secret_value"
    monkeypatch.setenv("HF_TOKEN", secret)
    program = ("import os\nfound = any('" + secret + "' in v for v in os.environ.values())\n"
               "for pid in filter(str.isdigit, os.listdir('/proc')):\n    try:\n"
               "        found |= b'" + secret + "' in open(f'/proc/{pid}/environ', 'rb').read()\n"
               "    except OSError:\n        pass\n")
    assert sandbox(program, "assert found")[0] == "fail"
    assert sandbox(program, "assert not found")[0] == "pass"  # the search itself ran
