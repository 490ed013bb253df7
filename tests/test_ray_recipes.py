"""The generation recipes under `--ray` on a real Ray cluster on loopback (tests/ray_cluster.py).

The cluster stands in for a multi-node one: the step replicas run as actors in worker processes
the cluster started, so the checkpoints they commit reach the driver only through storage. Each
run is tiny (the embedded SmolLM2 model, a few rows): the assertions are about the same rows,
not about speed (benchmarks/scale_out.py measures that).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from steps import REPO_ROOT, repo_folder

sys.path.insert(0, str(Path(__file__).parent))
from ray_cluster import RayCluster, ray_cluster_fixture  # noqa: E402, F401

ORCA = [str(REPO_ROOT / "pipelines" / "orca3_mix.py"), "--skills", "text_classification",
        "--rows", "3", "--tasks-per-item", "1", "--refinement-rounds", "1", "--agent-max-tokens",
        "120", "--teacher-max-tokens", "24", "--batch-size", "1", "--seed", "7"]
MAGPIE = [str(REPO_ROOT / "pipelines" / "magpie.py"), "--rows", "3", "--instruction-max-tokens",
          "16", "--response-max-tokens", "12", "--batch-size", "1", "--seed", "5"]


def cli(args: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args, "--output-dir", str(out), *extra],
                          capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)


def on_ray(cluster: RayCluster, replicas: int = 2) -> list[str]:
    return ["--ray", "--ray-address", cluster.address, "--replicas", str(replicas)]


def rows(out: Path) -> pl.DataFrame:
    """Every config's rows but run-dependent columns, in a stable order."""
    tables = [pl.read_parquet(repo_folder.config_file(out, c)) for c in repo_folder.configs(out)
              if c != repo_folder.FAILURES]
    return pl.concat(tables).sort("id")


@pytest.fixture(scope="module")
def local_orca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    done = cli(ORCA, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_orca3_mix_on_ray_gives_the_local_rows(local_orca: Path, ray_cluster: RayCluster,
                                                tmp_path: Path) -> None:
    done = cli(ORCA, tmp_path, *on_ray(ray_cluster))
    assert done.returncode == 0, done.stderr[-3000:]
    assert rows(tmp_path).height > 0 and rows(tmp_path).equals(rows(local_orca))
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["run_id"] == json.loads((local_orca / "run.json").read_text())["run_id"]


def test_orca3_mix_killed_on_ray_resumes_to_the_same_rows(local_orca: Path, ray_cluster: RayCluster,
                                                          tmp_path: Path) -> None:
    """Kill the driver after the first committed batch; the rerun redoes only what is missing."""
    proc = subprocess.Popen([sys.executable, *ORCA, "--output-dir", str(tmp_path),
                             *on_ray(ray_cluster, 1)], cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(".work/*/batches/*.done.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its first batch was committed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(tmp_path.glob(".work/*/batches/*.done.json")))
    assert committed >= 1
    done = cli(ORCA, tmp_path, *on_ray(ray_cluster, 1))
    assert done.returncode == 0, done.stderr[-3000:]
    # (the killed driver's actors may still commit a batch before Ray ends them: at least these)
    already = re.search(r"\((\d+) already done\)", done.stdout)
    assert already and int(already[1]) >= committed, done.stdout[-2000:]
    assert rows(tmp_path).equals(rows(local_orca))


def test_magpie_on_ray_gives_the_local_rows(ray_cluster: RayCluster, tmp_path: Path) -> None:
    local, clustered = tmp_path / "local", tmp_path / "ray"
    assert (done := cli(MAGPIE, local)).returncode == 0, done.stderr[-3000:]
    assert (done := cli(MAGPIE, clustered, *on_ray(ray_cluster))).returncode == 0, done.stderr[-3000:]
    assert rows(clustered).height > 0 and rows(clustered).equals(rows(local))
