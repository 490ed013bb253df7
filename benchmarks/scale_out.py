"""Scale-out: the same orca3_mix work locally and under `--ray` with 1 and 2 replicas per LLM step.

    python benchmarks/scale_out.py                          # server 8 rows at 0.5 s, embedded 2 rows
    python benchmarks/scale_out.py --server-rows 32 --latency 1.0 --local-rows 4

Two engines, each run three ways (a fresh CLI process and output folder per run, same seed):

- server: the project's latency-simulating OpenAI-compatible double (tests/openai_double.py,
  fixed latency, unlimited parallelism) as `openai:double@URL`: latency-bound, so replicas, which
  multiply the requests in flight, should help;
- local: the embedded SmolLM2 model in llama.cpp: CPU-bound, so on a machine with few cores more
  replicas only share the same cores.

The Ray runs join one cluster started for the benchmark on loopback (2 CPUs, tests/ray_cluster.py).
Throughput is rows ÷ the run's own wall time (run.json `wall_time_s`: the generation pipeline,
not process start-up or writing the card); ratios are against the local run of the same engine,
measured in the same invocation. The rows of every run are compared with the local run's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

from steps import REPO_ROOT, repo_folder

sys.path.insert(0, str(REPO_ROOT / "tests"))
from ray_cluster import start_cluster, stop_cluster  # noqa: E402

SCRIPT = REPO_ROOT / "pipelines" / "orca3_mix.py"
DOUBLE = REPO_ROOT / "tests" / "openai_double.py"


def run(out: Path, rows: int, engine: str, extra: list[str]) -> tuple[float, pl.DataFrame]:
    """One orca3_mix run; its wall time (s) and rows sorted by id."""
    args = [sys.executable, str(SCRIPT), "--skills", "text_classification", "--rows", str(rows),
            "--tasks-per-item", "1", "--refinement-rounds", "1", "--agent-max-tokens", "120",
            "--teacher-max-tokens", "24", "--batch-size", "1", "--seed", "3",
            "--agent-llm", engine, "--teacher", engine, "--output-dir", str(out), *extra]
    done = subprocess.run(args, capture_output=True, text=True, cwd=out.parent)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(extra) or 'local'}): {done.stderr[-2000:]}")
    record = json.loads((out / repo_folder.RUN_FILE).read_text())
    table = pl.concat([pl.read_parquet(repo_folder.config_file(out, c))
                       for c in repo_folder.configs(out) if c != repo_folder.FAILURES])
    return record["wall_time_s"], table.sort("id").drop("run_id", strict=False)


def measure(name: str, engine: str, rows: int, address: str, work: Path) -> None:
    results = {}
    for label, extra in [("local", []),
                         ("ray x1", ["--ray", "--ray-address", address, "--replicas", "1"]),
                         ("ray x2", ["--ray", "--ray-address", address, "--replicas", "2"])]:
        results[label] = run(work / f"{name}-{label.replace(' ', '')}", rows, engine, extra)
    base_wall, base_rows = results["local"]
    for label, (wall, table) in results.items():
        rate = table.height / wall if wall else float("nan")
        ratio = (table.height / wall) / (base_rows.height / base_wall) if wall and base_wall else float("nan")
        print(f"{name:7} {label:7} rows {table.height:3}  wall {wall:7.1f} s  {rate:6.2f} rows/s  "
              f"× local {ratio:5.2f}  same rows as local: {table.equals(base_rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-rows", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per request of the double")
    parser.add_argument("--local-rows", type=int, default=2)
    parser.add_argument("--skip-local", action="store_true", help="only the server engine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        work = Path(tmp)
        cluster = start_cluster(Path(f"/tmp/ray-bench-{Path(tmp).name[-8:]}"))
        double = subprocess.Popen([sys.executable, str(DOUBLE), "--port", "0", "--latency",
                                   str(args.latency)], stdout=subprocess.PIPE, text=True)
        try:
            assert double.stdout is not None
            url = double.stdout.readline().strip()
            print(f"ray cluster: 2 CPUs, started in {cluster.start_seconds:.1f} s; double at "
                  f"{args.latency} s per request")
            measure("server", f"openai:double@{url}", args.server_rows, cluster.address, work)
            if not args.skip_local:
                measure("local", "embedded", args.local_rows, cluster.address, work)
        finally:
            double.terminate()
            double.wait()
            stop_cluster(cluster)


if __name__ == "__main__":
    main()
