"""rest_em: self-training data the way ReST-EM made it (Singh et al. 2023, arXiv 2312.06585).

    problems ─▶ E-step: sample k solutions each (T 0.7, top-k 40) ─▶ verify ─▶ keep ≤ N correct
             ─▶ (--train) M-step: fine-tune the base model on them ─▶ repeat (1-3 iterations)

Problems: a .jsonl/.parquet file with `question` and either `answer` (math, checked with
math-verify) or `tests` (code, run in an isolated sandbox), or generate:arithmetic for built-in
word problems. Writes config `rest_em` (kept solutions as `messages`), funnel.parquet (every
sample's outcome), run.json (greedy pass@1, pass@k, majority vote per iteration; samples/s) and
the card, and pushes the folder with --push-to-hub.

--estimate prints each E-step's requests, tokens, time and cost without generating.
--max-tokens-total / --max-cost stop the run once reached, keeping what was sampled (exit 3);
ReST-EM keeps no checkpoints, so a rerun starts over.
"""

from __future__ import annotations

from pathlib import Path

from steps.errors import cli_main
from steps.estimate import render, rest_em_estimate
from steps.finish_run import begin_run, check_run, finish_run
from steps.recipe_config import parse_config
from steps.rest_em.config import RestEmConfig
from steps.rest_em.loop import planned_e_steps, run_rest_em, split_problems
from steps.run_record import RunRecord
from steps.servers.engine import reuse_engine_url


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@cli_main
def main(argv: list[str] | None = None) -> Path:
    config = parse_config(RestEmConfig, argv, __doc__)
    reuse_engine_url([config.engine], config.engine_url)
    check_run(config, engines={"--engine": config.engine})
    if config.estimate:
        print_estimate(config)
        return config.repo_dir
    begin_run(config.repo_dir)
    summary = run_rest_em(config)
    for record in summary["iterations"]:
        if "heldout" not in record:  # a cap stopped the E-step before any held-out problem
            print(f"iteration {record['iteration']} ({record['model']}): no held-out problem "
                  "sampled")
            continue
        heldout, k = record["heldout"], record["heldout"]["samples_per_problem"]
        print(f"iteration {record['iteration']} ({record['model']}): held-out greedy pass@1 "
              f"{_percent(heldout['greedy_pass@1'])}, pass@{k} {_percent(heldout[f'pass@{k}'])}, "
              f"majority vote {_percent(heldout['majority_vote'])}; "
              f"{record['samples_per_s']} samples/s")
    counts = summary["counts"]
    print(f"kept {counts['kept']} of {counts['samples']} train samples "
          f"({', '.join(f'{k} {v}' for k, v in counts.items() if k not in ('kept', 'samples'))}); "
          f"best iteration {summary['best_iteration']}")
    stopped = summary.get("not_done")
    finish_run(config, RunRecord.model_validate(summary), unfinished=stopped and (
        f"{stopped['problems']} of {stopped['of']} problems of E-step {stopped['iteration']} "
        f"not sampled: {stopped['reason']}"))
    return config.repo_dir


def print_estimate(config: RestEmConfig) -> None:
    """`--estimate`: every planned E-step's requests, tokens, time and cost; nothing generated."""
    budget = config.budget  # a bad cap fails here too
    estimate = rest_em_estimate(
        planned_e_steps(config, *split_problems(config)), engine=config.engine, k=config.k,
        max_new_tokens=config.max_new_tokens, repo_dir=config.repo_dir,
        throughput=config.throughput, price_in=config.price_in, price_out=config.price_out)
    print(render(estimate))
    if warning := budget.check_estimate(estimate):
        print(warning)


if __name__ == "__main__":
    main()
