"""rest_em: self-training data the way ReST-EM made it (Singh et al. 2023, arXiv 2312.06585).

    problems ─▶ E-step: sample k solutions each (T 0.7, top-k 40) ─▶ verify ─▶ keep ≤ N correct
             ─▶ (--train) M-step: fine-tune the base model on them ─▶ repeat (1-3 iterations)

Problems: a .jsonl/.parquet file with `question` and either `answer` (math, checked with
math-verify) or `tests` (code, run in an isolated sandbox), or generate:arithmetic for built-in
word problems. Writes config `rest_em` (kept solutions as `messages`), funnel.parquet (every
sample's outcome) and run.json (greedy pass@1, pass@k, majority vote per iteration; samples/s).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steps import REPO_ROOT
from steps.errors import cli_main
from steps.rest_em.loop import RestEmSettings, run_rest_em


def parse_args(argv: list[str] | None = None) -> RestEmSettings:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--problems", default="generate:arithmetic",
                   help="a .jsonl/.parquet problems file, or generate:arithmetic")
    p.add_argument("--count", type=int, default=200,
                   help="problems made by generate:arithmetic")
    p.add_argument("--engine", default="embedded",
                   help="embedded | llamacpp:PATH.gguf | openai:MODEL@URL | vllm:MODEL")
    p.add_argument("-k", type=int, default=32,
                   help="solutions sampled per problem (paper: 32 math, 64 code)")
    p.add_argument("--max-per-problem", type=int, default=10,
                   help="correct solutions kept per problem (paper: 10)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="problems kept apart for pass@k, majority vote and early stopping")
    p.add_argument("--iterations", type=int, default=1,
                   help="M-steps to run with --train (1-3)")
    p.add_argument("--train", action="store_true",
                   help="run the M-step (needs the [train] extra)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", type=Path, default=REPO_ROOT / "outputs" / "rest_em")
    args = p.parse_args(argv)
    return RestEmSettings(
        problems=args.problems, engine=args.engine, output_dir=args.output_dir, k=args.k,
        max_per_problem=args.max_per_problem, iterations=args.iterations, train=args.train,
        seed=args.seed, count=args.count, heldout_fraction=args.heldout_fraction,
        max_new_tokens=args.max_new_tokens,
        sampling={"temperature": args.temperature, "top_k": args.top_k})


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@cli_main
def main(argv: list[str] | None = None) -> Path:
    settings = parse_args(argv)
    summary = run_rest_em(settings)
    for record in summary["iterations"]:
        heldout, k = record["heldout"], record["heldout"]["samples_per_problem"]
        print(f"iteration {record['iteration']} ({record['model']}): held-out greedy pass@1 "
              f"{_percent(heldout['greedy_pass@1'])}, pass@{k} {_percent(heldout[f'pass@{k}'])}, "
              f"majority vote {_percent(heldout['majority_vote'])}; "
              f"{record['samples_per_s']} samples/s")
    counts = summary["counts"]
    print(f"kept {counts['kept']} of {counts['samples']} train samples "
          f"({', '.join(f'{k} {v}' for k, v in counts.items() if k not in ('kept', 'samples'))}); "
          f"best iteration {summary['best_iteration']}; wrote {settings.output_dir}")
    return settings.output_dir


if __name__ == "__main__":
    main()
