"""Inside the sandbox's namespaces: run a candidate program on each test case, print a verdict.

Started by `steps.rest_em.sandbox` as `unshare --net --pid --mount … python -I THIS JOB.json`,
so this script is process 1 of a fresh PID namespace, with no network and a private mount table.
It stays standard-library only and self-contained (run with -I, it imports nothing of the repo).

For every case it starts the candidate as a separate process that (root mode) runs under a
throwaway unprivileged uid, in a fresh tmpfs working directory, with an empty environment and
CPU/memory/file-size/process-count limits, and waits for it with a wall-clock limit; then it
kills every process left in the namespace. The verdict goes to stdout as one JSON line.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

WORK = Path("/tmp/work")
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")  # the host's world-writable dirs
PR_SET_NO_NEW_PRIVS = 38

# Userns mode (no uid to drop to): an audit hook that stops pure-Python writes outside the
# working directory and starting other programs. A tripwire, not a security boundary.
TRIPWIRE = r"""
import os, sys, runpy
_work = os.getcwd()
_deny = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "subprocess.Popen", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata"}
_path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                "os.truncate", "os.chmod", "os.chown", "shutil.rmtree"}
def _inside(path):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(path))
    return real == _work or real.startswith(_work + os.sep) or real == os.devnull
def _hook(event, args):
    if event in _deny:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and args[0] is not None:
        mode, flags = args[1] or "", args[2] or 0
        writes = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
        if writes and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} is not allowed")
    if event in _path_events and not all(_inside(a) for a in args[:2] if a is not None
                                         and isinstance(a, (str, bytes, int))):
        raise PermissionError(f"sandbox: {event} outside the working directory")
sys.addaudithook(_hook)
sys.argv = ["main.py"]
runpy.run_path("main.py", run_name="__main__")
"""


def _mount_private_dirs() -> None:
    """Empty root-owned tmpfs over each world-writable dir: the candidate can write in none."""
    for directory in PRIVATE_DIRS:
        if os.path.isdir(directory):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=755", "tmpfs",
                            directory], check=True)


def _limit(job: dict[str, Any]) -> None:
    """In the candidate process, after the uid change and before exec."""
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (job["cpu_seconds"], job["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (job["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (job["file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (job["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _kill_leftovers() -> None:
    """SIGKILL every other process of this PID namespace (only ever as its process 1)."""
    if os.getpid() != 1:
        raise SystemExit("sandbox launcher: not process 1 of a PID namespace; refusing kill(-1)")
    with contextlib.suppress(ProcessLookupError):  # nothing left
        os.kill(-1, signal.SIGKILL)


def _run_case(job: dict[str, Any], stdin: str, expect: str | None) -> tuple[str, str]:
    uid = job["uid"]
    (Path("/tmp") / "stdin").write_text(stdin)
    out_path, err_path = Path("/tmp/stdout"), Path("/tmp/stderr")
    command = [job["python"], "-I"] + (["-c", TRIPWIRE] if uid is None else ["main.py"])
    env = {"HOME": str(WORK), "TMPDIR": str(WORK), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    with open("/tmp/stdin") as stdin_file, open(out_path, "wb") as out, \
            open(err_path, "wb") as err:
        process = subprocess.Popen(
            command, cwd=WORK, env=env, stdin=stdin_file, stdout=out, stderr=err,
            user=uid, group=uid, extra_groups=[] if uid is not None else None,
            preexec_fn=lambda: _limit(job))
        try:
            code = process.wait(timeout=job["wall_seconds"])
        except subprocess.TimeoutExpired:
            return "timeout", f"wall clock over {job['wall_seconds']}s"
        finally:
            _kill_leftovers()
    if code in (-signal.SIGXCPU, -signal.SIGKILL):  # RLIMIT_CPU's soft, then hard, limit
        return "timeout", f"CPU limit {job['cpu_seconds']}s"
    stderr_tail = err_path.read_bytes()[-300:].decode(errors="replace").strip()
    if code != 0:
        return "fail", f"exit {code}: {stderr_tail.splitlines()[-1] if stderr_tail else ''}"
    if expect is not None:
        got = out_path.read_bytes()[: 1024 * 1024].decode(errors="replace")
        if got.strip() != expect.strip():
            return "fail", "wrong output"
    return "pass", ""


def main() -> None:
    """Run the job file named by argv[1] (files, cases, limits, uid); print the verdict as JSON."""
    job = json.loads(Path(sys.argv[1]).read_text())  # read before /tmp is replaced
    _mount_private_dirs()
    WORK.mkdir(mode=0o700)
    for name, text in job["files"].items():
        (WORK / name).write_text(text)
    if job["uid"] is not None:
        for path in (WORK, *WORK.iterdir()):
            os.chown(path, job["uid"], job["uid"])
    verdict, detail = "pass", ""
    for number, case in enumerate(job["cases"], start=1):
        verdict, detail = _run_case(job, case["stdin"], case["expect"])
        if verdict != "pass":
            detail = f"case {number}: {detail}"
            break
    print(json.dumps({"verdict": verdict, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
