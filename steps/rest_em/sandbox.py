"""Run model-written code against unit tests in a separate, limited, isolated process.

Never `exec` a candidate in the pipeline's own process: it can hang, fork, eat memory, open
sockets, write files or read secrets. Each candidate gets one `unshare` process tree:

- network: a new network namespace with no interfaces up: nothing can be reached, not even
  loopback servers of the host;
- processes: a new PID namespace with its own /proc: the candidate sees no host process (so no
  /proc/PID/environ), and everything it starts dies when its case ends;
- files: empty root-owned tmpfs over /tmp, /var/tmp, /run/lock and /dev/shm; the working
  directory is a fresh tmpfs folder, also HOME and TMPDIR; the environment is empty;
- limits: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC per case, and a wall-clock limit.

Isolation modes, chosen once per process (`isolation_mode()`):
- "root" (running as root, e.g. CI and these machines): the candidate also runs under a
  throwaway unprivileged uid (random, in no group): it can write only its working directory
  (and world-writable host files: this Debian image has none), cannot read files that are not
  world-readable, and RLIMIT_NPROC (which root ignores) holds. Candidates run with a Python
  that uid can reach: ours if world-executable, else /usr/bin/python3.
- "userns" (not root, unprivileged user namespaces enabled): the same namespaces, but the
  candidate keeps the invoking user's uid, so files that user owns are writable at the OS level.
  An audit hook inside the candidate stops Python-level writes outside its directory and
  starting processes; code that leaves Python (C extensions) could get past it.
- neither: code problems raise a UserError instead of running unisolated.
World-readable host files stay readable in both modes.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from steps.errors import UserError
from steps.rest_em.verifiers.base import Verdict

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
NAMESPACES = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
              "--mount-proc"]
THROWAWAY_UIDS = range(200_000, 1_000_000)
_uid_counter = itertools.count()


def _unshare_works(extra: list[str]) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, *extra, *NAMESPACES, "true"], capture_output=True)
    return probe.returncode == 0


@functools.cache
def isolation_mode() -> Literal["root", "userns"]:
    """The isolation this process can give candidates (see the module docstring); probed once.

    Raises:
        UserError: neither mode works here (no root and no unprivileged user namespaces).
    """
    if os.geteuid() == 0 and _unshare_works([]):
        return "root"
    if _unshare_works(["--user", "--map-root-user"]):
        return "userns"
    raise UserError("code problems: the sandbox needs Linux namespaces (unshare); run as root "
                    "or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")


def _world_runnable(path: Path) -> bool:
    """Can any user run this file (every parent folder searchable, the file executable)?"""
    return all(os.stat(folder).st_mode & 0o001 for folder in path.parents) and bool(
        os.stat(path).st_mode & 0o001)


def candidate_python(mode: str) -> str:
    """The interpreter candidates run with: ours, unless the throwaway uid cannot reach it."""
    ours = Path(sys.executable).resolve()
    if mode == "userns" or _world_runnable(ours):
        return str(ours)
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        raise UserError(f"code problems: {ours} is not runnable by an unprivileged user and there "
                        "is no /usr/bin/python3; install python3 (apt-get install python3)")
    return system


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one test case (rlimits of the candidate's process, and a wall clock)."""

    cpu_seconds: int = 4  # per test case (the APPS harness uses 4 s)
    wall_seconds: float = 10.0  # per test case
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # largest file written
    processes: int = 16  # RLIMIT_NPROC of the throwaway uid


class CodeSandbox:
    """Verdict of one candidate program on its tests: pass only if every test passes."""

    def __init__(self, limits: SandboxLimits = SandboxLimits(), *,
                 mode: Literal["root", "userns"] | None = None) -> None:
        """Pick the isolation mode (`isolation_mode()` unless given) and the candidates' Python.

        Raises:
            UserError: no isolation mode works, or no Python the throwaway uid can run.
        """
        self.limits = limits
        self.mode = mode or isolation_mode()
        self.python = candidate_python(self.mode)

    def __call__(self, code: str, tests: str | list[dict[str, str]]) -> tuple[Verdict, str]:
        """`tests`: Python asserts appended to the program, or stdin/stdout pairs."""
        if isinstance(tests, str):
            files = {"main.py": f"{code}\n\n{tests}\n"}
            cases = [{"stdin": "", "expect": None}]
        else:
            files = {"main.py": code}
            cases = [{"stdin": case["input"], "expect": case["output"]} for case in tests]
        uid = None
        if self.mode == "root":
            uid = THROWAWAY_UIDS[(os.getpid() * 7919 + next(_uid_counter)) % len(THROWAWAY_UIDS)]
        job = {"files": files, "cases": cases, "uid": uid, "python": self.python,
               **self.limits.__dict__}
        with tempfile.TemporaryDirectory(prefix="rest-em-job-") as folder:
            job_file = Path(folder) / "job.json"
            job_file.write_text(json.dumps(job))
            return self._launch(job_file, len(cases))

    def _launch(self, job_file: Path, n_cases: int) -> tuple[Verdict, str]:
        user = ["--user", "--map-root-user"] if self.mode == "userns" else []
        command = [shutil.which("unshare") or "unshare", *user, *NAMESPACES, sys.executable, "-I",
                   str(LAUNCHER), str(job_file)]
        budget = n_cases * (self.limits.wall_seconds + 2) + 30  # the launcher's own overhead
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=budget,
                                  env={"PATH": os.defpath})
        except subprocess.TimeoutExpired:  # unshare was killed: --kill-child ends the tree
            return "error", f"sandbox launcher exceeded {budget:.0f}s"
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return "error", f"sandbox launcher failed: {done.stderr.strip()[-300:]}"
        return result["verdict"], result["detail"]
