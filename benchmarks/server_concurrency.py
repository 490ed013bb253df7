"""How busy a recipe keeps an OpenAI-compatible server: requests in flight and wall ÷ ideal.

    python benchmarks/server_concurrency.py                          # orca3_mix, --batch-size 4 16 64
    python benchmarks/server_concurrency.py --max-concurrency 16 64 256 --rows 900   # ≥ 2,000 requests
    python benchmarks/server_concurrency.py --flow magpie --batch-size 16 64

Starts the project's protocol double of an OpenAI-compatible server (tests/openai_double.py) with
a fixed latency per request (1 s by default, no faults, unlimited parallelism), then runs the
recipe's CLI against it once per setting (`--agent-llm/--teacher openai:double@URL`, or Magpie's
`--engine`), each in a fresh process with its own output folder. The double counts the requests,
the peak and the time-weighted mean of the requests in flight over its busy window (first request
to last answer).

    ideal = max(requests × latency ÷ N, chain depth × latency)

N is the concurrency the setting asks for (`--max-concurrency N`; for `--batch-size B`, the knob
users had before --max-concurrency, N = B, the work items one step holds at a time), the chain
depth is the longest run of requests one work item makes one after another (AgentInstruct:
transformation, seed instructions, suggester + editor per round, teacher, then follow-up +
teacher per extra turn; Magpie: instruction + response per turn). wall is the busy window, so
process start-up and writing the dataset are not counted. "At cap" is the window from the first to
the last moment the server held the peak (N, once reached): a chain of steps has less than N
requests ready while it fills and drains, and this window leaves those ends out. Goal:
mean in flight ≥ 0.8 N while work remains, wall ÷ ideal ≤ 1.3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from steps import REPO_ROOT
from steps.taxonomy import load_taxonomy

DOUBLE = REPO_ROOT / "tests" / "openai_double.py"


def start_double(latency: float) -> tuple[subprocess.Popen[str], str]:
    """The double in its own process (so that it never waits on this one); its base URL."""
    process = subprocess.Popen([sys.executable, str(DOUBLE), "--port", "0", "--latency",
                                str(latency)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def admin(url: str, path: str) -> dict:
    root = url.removesuffix("/v1")
    request = urllib.request.Request(f"{root}{path}", b"{}" if path.startswith("/admin") else None)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def chain_depth(flow: str, args: argparse.Namespace) -> int:
    if flow == "magpie":
        return 2 * args.turns
    turns = max(skill.turns for skill in load_taxonomy().resolve(
        args.skills.split(",") if args.skills else None))
    return 2 + 2 * args.refinement_rounds + 1 + 2 * (turns - 1)


def supports(script: Path, option: str) -> bool:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          check=False)
    return option in done.stdout


def command(flow: str, url: str, out: Path, args: argparse.Namespace, knob: str, n: int) -> list[str]:
    engine = f"openai:double@{url}"  # the model the double serves
    if flow == "magpie":
        cmd = [str(REPO_ROOT / "pipelines" / "magpie.py"), "--rows", str(args.rows), "--engine",
               engine, "--template", "chatml", "--turns", str(args.turns)]
    else:
        cmd = [str(REPO_ROOT / "pipelines" / "orca3_mix.py"), "--rows", str(args.rows),
               "--agent-llm", engine, "--teacher", engine, "--no-curate",
               "--refinement-rounds", str(args.refinement_rounds)]
        if args.skills:
            cmd += ["--skills", args.skills]
    return [sys.executable, *cmd, "--output-dir", str(out), knob, str(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flow", choices=["orca3_mix", "magpie"], default="orca3_mix")
    p.add_argument("--rows", type=int, default=200, help="orca3_mix: about 2.66 requests per row")
    p.add_argument("--skills", help="orca3_mix --skills (default: all 17)")
    p.add_argument("--refinement-rounds", type=int, default=1)
    p.add_argument("--turns", type=int, default=1, help="Magpie turns")
    p.add_argument("--latency", type=float, default=1.0, help="seconds per request")
    settings = p.add_mutually_exclusive_group()
    settings.add_argument("--batch-size", type=int, nargs="+", help="settings to run (default 4 16 64)")
    settings.add_argument("--max-concurrency", type=int, nargs="+", help="settings to run")
    p.add_argument("--timeout", type=float, default=180, help="seconds allowed per run (a run cut "
                   "short is marked and gets no ratio)")
    args = p.parse_args()
    knob, values = ("--max-concurrency", args.max_concurrency) if args.max_concurrency else (
        "--batch-size", args.batch_size or [4, 16, 64])
    script = REPO_ROOT / "pipelines" / f"{args.flow}.py"
    if not supports(script, knob):
        sys.exit(f"error: {script.name} has no {knob} option yet")
    depth = chain_depth(args.flow, args)
    double, url = start_double(args.latency)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="server-concurrency-") as work:
            for n in values:
                admin(url, "/admin/reset")
                cmd = command(args.flow, url, Path(work) / f"{knob[2:]}-{n}", args, knob, n)
                started = time.perf_counter()
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                          check=False)
                    code = str(done.returncode)
                except subprocess.TimeoutExpired:
                    code = "timeout"
                process_wall = time.perf_counter() - started
                stats = admin(url, "/stats")
                ideal = max(stats["requests"] * args.latency / n, depth * args.latency)
                results.append((n, code, stats, process_wall, ideal))
                print(f"{knob} {n}: exit {code}, {stats['requests']} requests, "
                      f"peak {stats['peak_in_flight']}, mean {stats['mean_in_flight']:.1f}, "
                      f"busy {stats['busy_s']:.1f} s, ideal {ideal:.1f} s", flush=True)
    finally:
        double.terminate()
        double.wait(10)
    print(f"\n{args.flow}, --rows {args.rows}, latency {args.latency:g} s, chain depth {depth}; "
          "wall = the server's busy window (first request to last answer)\n")
    print(f"| {knob} (N) | exit | requests | peak in flight | mean in flight | mean ÷ N | mean ÷ N "
          "at cap (s at cap) | wall s | process s | ideal s | wall ÷ ideal |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, code, stats, process_wall, ideal in results:
        ratio = f"{stats['busy_s'] / ideal:.2f}" if code == "0" else "— (incomplete)"
        print(f"| {n} | {code} | {stats['requests']} | {stats['peak_in_flight']} | "
              f"{stats['mean_in_flight']:.1f} | {stats['mean_in_flight'] / n:.2f} | "
              f"{stats['mean_in_flight_capped'] / n:.2f} ({stats['capped_s']:.0f}) | "
              f"{stats['busy_s']:.1f} | {process_wall:.1f} | {ideal:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
