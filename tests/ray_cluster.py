"""A real Ray cluster on loopback, started with Ray's own CLI the way a cluster's head node is.

    ray start --head --node-ip-address 127.0.0.1 --port <free> --num-cpus 2 ...

It stands in for a multi-node cluster: the driver connects by address (`ray.init(address=…)` or
distilabel's `ray_head_node_url`), and every step replica runs as an actor in a worker process
that the cluster (not the driver) started, so nothing reaches it but what Ray ships: pickled
steps, the environment the cluster was started with, and shared storage. The cluster's workers
import `steps` (and test modules) from this checkout: PYTHONPATH is set when the cluster starts,
as the package is installed on every node of a real cluster.

Ray does not stay on loopback: it replaces 127.0.0.1 by the machine's own address (its
`resolve_ip_for_localhost`, so that other nodes could join) and its servers listen on every
interface; the machines the tests run on accept no connection from outside.

Only this cluster is stopped at the end: its raylet, GCS and workers run in their own session
(process group), which the fixture ends, rather than `ray stop`, which stops every Ray cluster of
the user on the machine. Skipped when ray is not installed (extra `[ray]`).

    from ray_cluster import RayCluster, ray_cluster_fixture  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RayCluster:
    address: str  # 127.0.0.1:<port>, for ray.init(address=…) and RAY_ADDRESS
    temp_dir: Path  # Ray's session folder (logs under session_latest/logs)
    start_seconds: float  # wall time of `ray start` until the cluster answered
    head_pgid: int

    def processes(self) -> list[int]:
        """Pids of this cluster's live processes: its process group (GCS, raylet, agents) and
        their descendants (the workers running actors, which raylet puts in groups of their own)."""
        table = [row for row in _proc_table() if row[3] != "Z"]
        members = {pid for pid, _, pgid, _ in table if pgid == self.head_pgid}
        grown = True
        while grown:
            more = {pid for pid, ppid, _, _ in table if ppid in members} - members
            members |= more
            grown = bool(more)
        return sorted(members)

    def rss_mib(self) -> float:
        """Resident memory of the cluster's processes (head, raylet, workers), in MiB."""
        total = 0
        for pid in self.processes():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster(temp_dir: Path, num_cpus: int = 2, env: dict[str, str] | None = None) -> RayCluster:
    """Start a head node on loopback; `ray start` returns once the head accepts drivers.

    Raises:
        RuntimeError: `ray start` failed or hung (whatever it started is stopped first).
    """
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        raise RuntimeError("ray CLI not found next to the interpreter")
    port = _free_port()
    cluster_env = {**os.environ, **(env or {}),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"),
                                                               os.environ.get("PYTHONPATH")])),
                   "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.monotonic()
    # Its own session: the head's daemons (GCS, raylet, workers) stay in the process group that
    # `ray start` leads, so the group id is that command's pid, whatever happens next.
    command = subprocess.Popen(
        [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", str(num_cpus), "--include-dashboard", "false", "--disable-usage-stats",
         "--ray-client-server-port", str(_free_port()),  # not the fixed 10001 of another cluster
         "--temp-dir", str(temp_dir), "--object-store-memory", str(200 * 1024**2)],
        env=cluster_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir, 0.0, head_pgid=command.pid)
    try:
        output, _ = command.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        stop_cluster(cluster)
        raise RuntimeError("ray start did not finish in 180 s") from None
    if command.returncode != 0:
        stop_cluster(cluster)
        raise RuntimeError(f"ray start failed: {output[-2000:]}")
    cluster.start_seconds = time.monotonic() - started
    return cluster


def _proc_table() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, state) of every process, from /proc (Linux)."""
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
        table.append((int(entry.name), int(fields[1]), int(fields[2]), fields[0]))
    return table


def stop_cluster(cluster: RayCluster, grace: float = 5) -> None:
    """End every process of this cluster, no other Ray cluster's: SIGTERM, then SIGKILL after
    `grace` seconds (the GCS takes longer than that to exit on SIGTERM; a test cluster keeps
    nothing worth a clean shutdown)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in cluster.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while cluster.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not cluster.processes():
            return


@pytest.fixture(scope="module", name="ray_cluster")
def ray_cluster_fixture() -> Iterator[RayCluster]:
    """A 2-CPU Ray cluster on 127.0.0.1 for the module's tests; stopped at the end."""
    if os.environ.get("CI") == "true":  # CI installs ray[default]: a missing one is a failure
        import ray  # noqa: F401
    pytest.importorskip("ray", reason="ray not installed (pip install -e '.[ray]')")
    # A short folder: Ray's socket paths must stay under 107 characters.
    temp_dir = Path(f"/tmp/ray-{os.getpid()}-{_free_port()}")
    cluster = start_cluster(temp_dir)
    try:
        yield cluster
    finally:
        import ray

        ray.shutdown()  # this process's connection, if a test made one
        stop_cluster(cluster)
        shutil.rmtree(temp_dir, ignore_errors=True)


__all__ = ["RayCluster", "ray_cluster_fixture", "start_cluster", "stop_cluster"]


if __name__ == "__main__":  # `python tests/ray_cluster.py`: what starting a test cluster costs here
    cluster = start_cluster(Path(f"/tmp/ray-{os.getpid()}"))
    try:
        time.sleep(3)  # let the agents finish starting
        print(f"ray start: {cluster.start_seconds:.1f} s; idle: {cluster.rss_mib():.0f} MiB RSS in "
              f"{len(cluster.processes())} processes")
    finally:
        started = time.monotonic()
        stop_cluster(cluster)
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        print(f"stop: {time.monotonic() - started:.1f} s; left: {cluster.processes()}")
