"""Does ReST-EM raise held-out accuracy? A scripted demonstration on generated arithmetic.

    python benchmarks/rest_em_gain.py                  # full size: hours on CPU
    python benchmarks/rest_em_gain.py --small          # smoke run: a few problems, minutes

Problems: generated arithmetic word problems of 2-4 steps (`generate:arithmetic:2-4`), split into
train (default 400), validation (100) and held-out (200) by a seeded shuffle. The held-out split
is only ever measured; the validation split picks the M-step's settings.

    iteration 0  E-step with the base (exported as F32 GGUF, as fine-tuned models are): k samples
                 per train problem (T 0.7, top-k 40, no repetition penalty), at most
                 --max-per-problem (4) correct kept -> D1; held-out greedy pass@1, pass@k and
                 majority vote
    sweep        fine-tune the base on D1 once per learning rate; the validation greedy reward
                 after each epoch picks (learning rate, epochs). The chosen run is p1.
    iteration 1  E-step with p1 -> D2 and held-out metrics; fine-tune the *base* on D2 with the
                 chosen settings -> p2
    iteration 2  held-out metrics of p2

Prints one row per iteration: held-out greedy pass@1, pass@k and majority vote with percentile
bootstrap 95% intervals over problems, the paired difference of greedy pass@1 to the base (the
goal: +5 points with the interval above 0; the paper's gains were +5.9 to +6.4), E-step
samples/s and the M-step's seconds.
Writes everything to OUTPUT_DIR/results.json. Needs the [train] extra. The E-step is
`steps.rest_em.estep.run_estep` on the engine as `steps.engines` builds it, so a faster engine
(batched decoding) speeds this script up without a change here. It runs --replicas llama.cpp
processes per LLM step, sharing the cores (default 2: on 2 cores 1.64x faster than 1, the same
texts; each process holds its own copy of the weights).

Resumable: each E-step runs in chunks of --chunk problems, and every finished chunk, base export
and fine-tune is kept under OUTPUT_DIR (`steps.rest_em.run_store`); rerunning the same command
skips them, so a killed run (Ctrl-C, kill) loses at most the piece in flight. Samples are seeded
per problem, so chunks change no text. A command with other settings into the same OUTPUT_DIR
is refused, naming the options that differ; --replicas is a run option a rerun may change.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

from steps import REPO_ROOT
from steps.cluster import ClusterOptions
from steps.engines import KINDS, check_engine
from steps.errors import cli_main
from steps.publish.scrub import portable, portable_path
from steps.recipe_config import CliParser
from steps.rest_em.estep import PAPER_SAMPLING, EStepResult, ProblemResult, run_estep
from steps.rest_em.metrics import bootstrap_interval, per_problem
from steps.rest_em.mstep import check_train_extra, export_base, fine_tune
from steps.rest_em.mstep_types import BaseWeights, MStepResult, MStepSettings
from steps.rest_em.problems import Problem, load_problems
from steps.rest_em.records import kept_rows
from steps.rest_em.run_store import (
    EStepStore,
    claim_output_dir,
    load_export,
    load_mstep,
    rowless,
    save_export,
    save_mstep,
)


class HelpFormat(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each option's default (an option without one says its own)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


DEFAULT_OUTPUT_DIR = Path("outputs") / "rest_em_gain"  # under REPO_ROOT
# What --small sets; options given on the command line win over it.
SMALL = {"train": 8, "validation": 4, "heldout": 8, "k": 4, "steps": "1-2",
         "learning_rates": "1e-4", "epochs": 1, "max_new_tokens": 96}


def at_least_one(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def step_range(text: str) -> str:
    """argparse type: MIN-MAX operations per problem, 1 <= MIN <= MAX <= 6 (kept as written)."""
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 6):
        raise argparse.ArgumentTypeError(f"{text!r}: give MIN-MAX with 1 <= MIN <= MAX <= 6, e.g. 2-4")
    return text


def learning_rates(text: str) -> str:
    """argparse type: comma-separated positive learning rates (kept as written)."""
    try:
        valid = all(0 < float(rate) < math.inf for rate in text.split(","))
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers separated by commas, "
                                         "e.g. 1e-5,3e-5")
    return text


def local_engine(text: str) -> str:
    """argparse type: an engine this script decodes in its own processes (a GGUF on llama.cpp).

    Raises:
        UserError: a malformed spec, a missing file or one without a GGUF header (`check_engine`).
    """
    name, _, rest = text.partition(":")
    kind = KINDS.get(name)
    if not (kind and kind.local_decoding and bool(rest) == (":" in kind.usage)):
        raise argparse.ArgumentTypeError(f"{text!r}: this script samples in its own processes; "
                                         "give embedded or llamacpp:PATH.gguf")
    check_engine(text, "--engine")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; a bad value is one `UserError` line (see --help) before any work."""
    p = CliParser(description=__doc__, formatter_class=HelpFormat)
    p.add_argument("--small", action="store_true",
                   help="smoke run: 8 train, 4 validation, 8 held-out one- and two-step problems (so "
                        "that the base solves some), k 4, 1 epoch at lr 1e-4, short outputs; "
                        "options given as well win")
    p.add_argument("--engine", type=local_engine, default="embedded",
                   help="a GGUF engine: embedded | llamacpp:PATH.gguf")
    p.add_argument("--train", type=at_least_one, default=400, help="train problems")
    p.add_argument("--validation", type=at_least_one, default=100,
                   help="validation problems (the sweep)")
    p.add_argument("--heldout", type=at_least_one, default=200,
                   help="held-out problems (only measured)")
    p.add_argument("--steps", type=step_range, default="2-4",
                   help="operations per generated problem, MIN-MAX (1 <= MIN <= MAX <= 6)")
    p.add_argument("-k", type=at_least_one, default=16, help="samples per problem")
    p.add_argument("--max-per-problem", type=at_least_one, default=4, help="correct samples kept")
    p.add_argument("--iterations", type=at_least_one, default=2, help="M-steps")
    p.add_argument("--learning-rates", type=learning_rates, default="1e-5,3e-5,1e-4",
                   help="learning rates of the sweep, comma-separated")
    p.add_argument("--epochs", type=at_least_one, default=3, help="most epochs of the sweep")
    p.add_argument("--batch-size", type=at_least_one, default=8, help="M-step batch size")
    p.add_argument("--max-new-tokens", type=at_least_one, default=192, help="longest solution")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems, the split and sampling")
    p.add_argument("--chunk", type=at_least_one, default=32,
                   help="problems per E-step chunk, the unit a rerun resumes from (a multiple of "
                        "the E-step's batch of 8 keeps the engine full)")
    p.add_argument("--replicas", type=at_least_one, default=2,
                   help="replicas of the E-step's LLM steps, one llama.cpp process each (a run "
                        "option: same texts with any number, so a rerun may change it); on 2 cores "
                        "2 decode 1.64x faster than 1")
    p.add_argument("--output-dir", type=Path,
                   help="where the run's pieces, settings.json and results.json are kept "
                        f"(default: {DEFAULT_OUTPUT_DIR} in the repository)")
    if p.parse_known_args(argv)[0].small:
        p.set_defaults(**SMALL)
    args = p.parse_args(argv)
    args.output_dir = args.output_dir or REPO_ROOT / DEFAULT_OUTPUT_DIR
    return args


def run_settings(args: argparse.Namespace) -> dict[str, str]:
    """What makes a run's pieces: every option but the folder they are kept in and `--replicas`.

    (`--small` is not one: the values it sets are.)
    """
    return {name: str(value) for name, value in sorted(vars(args).items())
            if name not in ("output_dir", "replicas", "small")}


def split(problems: list[Problem], sizes: tuple[int, int, int], seed: int
          ) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """(train, validation, held-out): disjoint, by a seeded shuffle."""
    order = problems[:]
    random.Random(f"rest-em-gain-{seed}").shuffle(order)
    train, validation = order[:sizes[0]], order[sizes[0]:sizes[0] + sizes[1]]
    return train, validation, order[sizes[0] + sizes[1]:sum(sizes)]


def _interval(values: list[float]) -> dict[str, Any]:
    low, high = bootstrap_interval(values)
    return {"mean": sum(values) / len(values), "low": low, "high": high}


def heldout_metrics(estep: EStepResult, heldout: list[Problem], k: int,
                    base_greedy: list[float] | None) -> tuple[dict[str, Any], list[float]]:
    """Held-out metrics with 95% intervals, and the per-problem greedy rewards."""
    by_id = {r.problem.id: r for r in estep.results}
    values = per_problem(heldout, {p.id: by_id[p.id].scored for p in heldout},
                         {p.id: by_id[p.id].greedy for p in heldout})
    metrics = {name: _interval(values[name])
               for name in ("greedy_pass@1", f"pass@{k}", "majority_vote")}
    if base_greedy is not None:
        metrics["greedy_gain_over_base"] = _interval(
            [now - before for now, before in zip(values["greedy_pass@1"], base_greedy, strict=True)])
    return metrics, values["greedy_pass@1"]


def estep_chunk(problems: list[Problem], engine: str, args: argparse.Namespace
                ) -> tuple[EStepResult, bool]:
    """One chunk's E-step, and whether Ctrl-C was pressed while it ran.

    A KeyboardInterrupt inside distilabel's pipeline set-up leaves its worker pool running and the
    process hung, so Ctrl-C only sets a flag until distilabel installs its own handler (its first
    Ctrl-C stops the pipeline gracefully: `run` returns the rows it has). distilabel leaves that
    handler installed after `run`; the previous one is put back, so Ctrl-C between chunks and in
    the M-step interrupts as usual.
    """
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pressed.append(signum))
    try:
        estep = run_estep(problems, engine, k=args.k, max_per_problem=args.max_per_problem,
                          seed=args.seed, max_new_tokens=args.max_new_tokens,
                          cluster=ClusterOptions(replicas=args.replicas))
    finally:
        signal.signal(signal.SIGINT, previous)
    return estep, bool(pressed)


def chunked_estep(problems: list[Problem], engine: str, iteration: int,
                  args: argparse.Namespace) -> EStepResult:
    """The E-step of `iteration` in chunks of `args.chunk` problems, finished chunks reused.

    Raises:
        KeyboardInterrupt: Ctrl-C: a chunk the pipeline returned without some rows (it was
            stopped) is not kept; a chunk that finished whole is.
    """
    store = EStepStore(args.output_dir / f"estep-{iteration}")
    chunks = [problems[start:start + args.chunk] for start in range(0, len(problems), args.chunk)]
    results: list[ProblemResult] = []
    seconds = 0.0
    for index, chunk in enumerate(chunks, 1):
        kept = store.load(index)
        where = f"E-step iteration {iteration}: chunk {index}/{len(chunks)}"
        if kept is not None:
            print(f"{where}, kept from an earlier run")
        else:
            estep, pressed = estep_chunk(chunk, engine, args)
            missing = sum(map(rowless, estep.results))
            if missing:
                print(f"{where}: {missing} of {len(chunk)} problems came back without a row (the "
                      "run was stopped); the chunk is not kept, rerun the command to redo it")
                raise KeyboardInterrupt
            store.save(index, estep.results, estep.seconds)
            kept = estep.results, estep.seconds
            print(f"{where}, {estep.samples / estep.seconds:.2f} samples/s")
            if pressed:  # Ctrl-C before distilabel's handler took over: the chunk still finished
                raise KeyboardInterrupt
        results += kept[0]
        seconds += kept[1]
    return EStepResult(results, seconds)


def fine_tune_kept(base: BaseWeights, rows: list[dict[str, Any]], validation: list[Problem],
                   folder: Path, settings: MStepSettings, args: argparse.Namespace) -> MStepResult:
    """`fine_tune` into `folder`, or the fine-tune an earlier run finished there."""
    result = load_mstep(folder)
    if result is not None:
        print(f"  {folder.name}: kept from an earlier run")
        return result
    result = fine_tune(base, rows, validation, folder, seed=args.seed, settings=settings)
    save_mstep(folder, result)
    return result


def estep_record(estep: EStepResult) -> dict[str, Any]:
    return {"seconds": round(estep.seconds, 1), "samples": estep.samples,
            "samples_per_s": round(estep.samples / estep.seconds, 3),
            "output_tokens_per_s": round(sum(r.output_tokens for r in estep.results)
                                         / estep.seconds, 1)}


def training_rows(estep: EStepResult, train: list[Problem], iteration: int, engine: str,
                  args: argparse.Namespace) -> list[dict[str, Any]]:
    by_id = {r.problem.id: r for r in estep.results}
    return [row for p in train for row in kept_rows(
        by_id[p.id], iteration=iteration, model_id=engine, run_id="rest-em-gain",
        sampling={**PAPER_SAMPLING, "max_new_tokens": args.max_new_tokens, "seed": args.seed})]


def sweep(base: BaseWeights, rows: list[dict[str, Any]], validation: list[Problem],
          args: argparse.Namespace) -> tuple[MStepResult, list[dict[str, Any]]]:
    """One fine-tune per learning rate; the best (learning rate, epoch) on validation wins."""
    runs = []
    for rate in [float(r) for r in args.learning_rates.split(",")]:
        settings = MStepSettings(epochs=args.epochs, learning_rate=rate, batch_size=args.batch_size,
                                 patience=args.epochs, eval_max_new_tokens=args.max_new_tokens)
        result = fine_tune_kept(base, rows, validation,
                                args.output_dir / "models" / f"sweep-lr{rate:g}", settings, args)
        runs.append((rate, result))
        print(f"  sweep lr {rate:g}: validation greedy by epoch {result.validation_rewards}, "
              f"{result.seconds:.0f} s")
    rate, best = max(runs, key=lambda run: (run[1].validation_rewards[run[1].best_epoch], -run[0]))
    table = [{"learning_rate": r, "validation_by_epoch": res.validation_rewards,
              "best_epoch": res.best_epoch, "seconds": round(res.seconds, 1),
              "chosen": r == rate} for r, res in runs]
    return best, table


def _cell(metric: dict[str, Any]) -> str:
    return f"{100 * metric['mean']:5.1f} [{100 * metric['low']:5.1f}, {100 * metric['high']:5.1f}]"


def print_table(report: dict[str, Any], k: int) -> None:
    print(f"\n| iteration | held-out greedy pass@1 | pass@{k} | majority vote | greedy gain over "
          "base | E-step samples/s | M-step s |")
    print("|---|---|---|---|---|---|---|")
    for record in report["iterations"]:
        m = record["heldout"]
        gain = _cell(m["greedy_gain_over_base"]) if "greedy_gain_over_base" in m else "-"
        mstep = record.get("mstep_seconds_before")
        print(f"| {record['iteration']} | {_cell(m['greedy_pass@1'])} | {_cell(m[f'pass@{k}'])} | "
              f"{_cell(m['majority_vote'])} | {gain} | {record['estep']['samples_per_s']} | "
              f"{'-' if mstep is None else round(mstep)} |")
    print("(percent; 95% percentile bootstrap intervals over held-out problems, paired for the gain)")


@cli_main
def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    check_train_extra()
    base = BaseWeights.from_engine(args.engine)
    kept = claim_output_dir(args.output_dir, run_settings(args))  # after every input check
    print(f"resuming the run in {portable_path(args.output_dir)} (finished pieces kept: {kept})"
          if kept else f"starting the run in {portable_path(args.output_dir)}")
    started = time.perf_counter()
    problems = load_problems(f"generate:arithmetic:{args.steps}",
                             count=args.train + args.validation + args.heldout, seed=args.seed)
    train, validation, heldout = split(problems, (args.train, args.validation, args.heldout),
                                       args.seed)
    base_folder = args.output_dir / "models" / "base"
    engine = load_export(base_folder)
    if engine is None:
        engine = export_base(base, base_folder)
        save_export(base_folder, engine)
    report: dict[str, Any] = {"settings": {**run_settings(args), "replicas": str(args.replicas)},
                              "split": {"train": len(train), "validation": len(validation),
                                        "heldout": len(heldout)}, "iterations": []}
    base_greedy, mstep_seconds = None, None
    for iteration in range(args.iterations + 1):
        last = iteration == args.iterations
        print(f"iteration {iteration}: E-step with {engine.rsplit('/', 1)[-1]}")
        estep = chunked_estep(heldout if last else train + heldout, engine, iteration, args)
        metrics, greedy = heldout_metrics(estep, heldout, args.k, base_greedy)
        base_greedy = base_greedy or greedy
        rows = [] if last else training_rows(estep, train, iteration, engine, args)
        report["iterations"].append({"iteration": iteration, "heldout": metrics,
                                     "estep": estep_record(estep), "kept_rows": len(rows),
                                     "mstep_seconds_before": mstep_seconds})
        print(f"  held-out greedy pass@1 {_cell(metrics['greedy_pass@1'])}; kept {len(rows)} rows")
        if last or not rows:
            break
        if iteration == 0:
            result, report["sweep"] = sweep(base, rows, validation, args)
            chosen = next(run for run in report["sweep"] if run["chosen"])
            rate, epochs = chosen["learning_rate"], max(1, chosen["best_epoch"])
        else:
            result = fine_tune_kept(
                base, rows, validation, args.output_dir / "models" / f"iteration-{iteration + 1}",
                MStepSettings(epochs=epochs, learning_rate=rate, batch_size=args.batch_size,
                              patience=epochs, eval_max_new_tokens=args.max_new_tokens), args)
        engine, mstep_seconds = result.engine, result.seconds
        report["iterations"][-1]["mstep"] = result.summary()
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(json.dumps(portable(report), indent=2))
    print_table(report, args.k)
    print(f"wrote {portable_path(args.output_dir / 'results.json')} ({report['wall_time_s']} s)")
    return args.output_dir


if __name__ == "__main__":
    main()
