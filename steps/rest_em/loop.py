"""ReST-EM iterations: E-step (sample, verify, cap), evaluate, M-step (fine-tune the base), repeat.

    iteration 0: E-step with the base model p0 on train (+ validation) + held-out problems (with
                 --train, from the base exported as fine-tuned models are: same weights format
                 throughout) -> dataset D1 (train) and p0's metrics per split
    iteration i: M-step: fine-tune the *base* model on Di, the epoch picked on validation
                 -> p_i (extra [train]); E-step with p_i -> D(i+1) and p_i's metrics
    stop after `iterations` M-steps, or as soon as validation greedy pass@1 stops improving;
    the last E-step needs only the validation and held-out splits.

With --train, a validation split (`validation_fraction` of the non-held-out problems) makes
every choice (the M-step's epoch, when to stop, the best iteration); the held-out split is only
measured and reported, so its numbers are not biased by the choices (issue 13).

Everything lands in one repository folder: config `rest_em` (kept solutions of every E-step,
tagged with their iteration), funnel.parquet (outcome counts) and run.json (metrics per
iteration, samples/s, tokens, settings, package versions).

A token or cost cap (`--max-tokens-total`, `--max-cost`) stops the E-step that reaches it: the
problems sampled so far are written and evaluated, no M-step follows, and run.json's `not_done`
says how many problems were left; there are no checkpoints, so a rerun starts over.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from steps.engines import EngineSpec
from steps.estimate import priced_tokens
from steps.repo_folder import RUN_FILE, write_config
from steps.rest_em.config import RestEmConfig
from steps.rest_em.estep import EStepResult, run_estep
from steps.rest_em.metrics import evaluate
from steps.rest_em.mstep import check_train_extra, export_base, fine_tune
from steps.rest_em.mstep_types import BaseWeights
from steps.rest_em.problems import Problem, load_problems, split_heldout
from steps.rest_em.records import CONFIG, FLOW, kept_rows
from steps.rest_em.selection import count_outcomes, funnel_rows
from steps.rest_em.verifiers.registry import verifier_for
from steps.rows import FUNNEL_SCHEMA, to_table
from steps.run_record import WORK_DIR, engine_record, write_run_record
from steps.servers.engine import serve_engines


def _iteration_record(iteration: int, model: str, estep: EStepResult,
                      splits: dict[str, list[Problem]]) -> dict[str, Any]:
    by_id = {r.problem.id: r for r in estep.results}
    train = splits["train"]
    split_metrics = {}
    for name, split in splits.items():
        done = [p for p in split if p.id in by_id]
        if done:
            split_metrics[name] = evaluate(done, {p.id: by_id[p.id].scored for p in done},
                                           {p.id: by_id[p.id].greedy for p in done})
    train_results = [by_id[p.id] for p in train if p.id in by_id]
    tokens = sum(r.output_tokens for r in estep.results)
    return {
        "iteration": iteration,
        "model": model,
        **split_metrics,
        "counts": count_outcomes([r.scored for r in train_results],
                                 [r.kept for r in train_results]),
        "generations": estep.samples,
        "seconds": round(estep.seconds, 2),
        "samples_per_s": round(estep.samples / estep.seconds, 3),
        "output_tokens_per_s": round(tokens / estep.seconds, 2),
    }


def split_problems(settings: RestEmConfig) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """The run's problems as (train, validation, held-out); validation only with --train.

    Raises:
        UserError: a bad problems file or split fraction.
    """
    problems = load_problems(settings.problems, count=settings.count, seed=settings.seed)
    train, heldout = split_heldout(problems, settings.heldout_fraction)
    validation: list[Problem] = []
    if settings.train:  # without training there is nothing to choose
        train, validation = split_heldout(train, settings.validation_fraction, split="validation",
                                          option="--validation-fraction")
    return train, validation, heldout


def planned_e_steps(settings: RestEmConfig, train: list[Problem], validation: list[Problem],
                    heldout: list[Problem]) -> list[list[Problem]]:
    """The problems of each E-step when every iteration runs (none stops early).

    Without --train one E-step on train + held-out; with it one on all problems per M-step, then
    the last on validation + held-out only (evaluation).
    """
    if not settings.train:
        return [train + heldout]
    return [train + validation + heldout] * settings.iterations + [validation + heldout]


def run_rest_em(settings: RestEmConfig) -> dict[str, Any]:
    """Run the iterations, write the repository folder, return the run summary.

    Raises:
        UserError: a bad problems file, a verifier that cannot run here, a cost cap without
            prices, or --train without the [train] extra or with an engine that has no local
            weights.
    """
    train, validation, heldout = split_problems(settings)
    for kind in sorted({p.kind for p in train + validation + heldout}):
        verifier_for(kind).preflight()  # fail now, with the fix, not after the first E-step
    budget = settings.budget  # a bad cap fails now
    if settings.train:  # fail now, not after the first E-step
        check_train_extra()
        base = BaseWeights.from_engine(settings.engine)
    run_id = settings.run_id()
    started = time.time()
    engine, model_id = settings.engine, EngineSpec.parse(settings.engine).model_id
    if settings.train:
        engine = export_base(base, settings.repo_dir / "models" / "base")
    split_sizes = {"train": len(train), "validation": len(validation), "heldout": len(heldout)}
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    best = 0
    run = _Run(settings, run_id, started, split_sizes)
    for iteration, problems in enumerate(planned_e_steps(settings, train, validation, heldout)):
        last = settings.train and iteration == settings.iterations  # evaluation only
        # A managed-server engine (vllm:) is served per iteration: the M-step changes its weights.
        with serve_engines([engine], settings.repo_dir / WORK_DIR / run_id):
            estep = run_estep(problems, engine, k=settings.k,
                              max_per_problem=settings.max_per_problem,
                              seed=settings.seed, sampling=settings.sampling,
                              max_new_tokens=settings.max_new_tokens, cluster=settings,
                              serving=settings, budget=budget, spent=run.tokens)
        run.tokens = {k: run.tokens[k] + estep.tokens[k] for k in run.tokens}
        record = _iteration_record(iteration, model_id, estep, {
            "train": [] if last else train, "validation": validation, "heldout": heldout})
        history.append(record)
        by_id = {r.problem.id: r for r in estep.results}
        new_rows = [row for p in ([] if last else train) if p.id in by_id for row in kept_rows(
            by_id[p.id], iteration=iteration, model_id=model_id, run_id=run_id,
            sampling={**settings.sampling, "max_new_tokens": settings.max_new_tokens,
                      "seed": settings.seed, "max_per_problem": settings.max_per_problem})]
        rows += new_rows
        if estep.not_done:  # a cap: what was sampled is written, nothing more is run
            record["not_done"] = len(estep.not_done)
            run.not_done = {"problems": len(estep.not_done), "of": len(problems),
                            "iteration": iteration,
                            "reason": estep.capped or "the E-step stopped before them"}
            break
        improved = iteration == 0 or (record["validation"]["greedy_pass@1"]
                                      > history[best]["validation"]["greedy_pass@1"])
        best = iteration if improved else best
        run.write(rows, history, best)
        # (written after every E-step: a failed M-step loses no data)
        if not improved or last or not settings.train:
            break  # (not improved: validation reward stopped improving, the best so far stays)
        if not new_rows:
            record["mstep"] = {"skipped": "no correct solutions to fine-tune on"}
            break
        result = fine_tune(base, new_rows, validation,
                           settings.repo_dir / "models" / f"iteration-{iteration + 1}",
                           seed=settings.seed)
        record["mstep"] = result.summary()
        engine, model_id = result.engine, result.model_id
    return run.write(rows, history, best)


@dataclass
class _Run:
    """What run.json says beside the iterations: tokens so far and the problems a cap left."""

    settings: RestEmConfig
    run_id: str
    started: float
    split: dict[str, int]
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0})
    not_done: dict[str, Any] | None = None

    def write(self, rows: list[dict[str, Any]], history: list[dict[str, Any]],
              best: int) -> dict[str, Any]:
        """Write the folder (config `rest_em`, funnel, run.json); return the run summary."""
        settings, out = self.settings, self.settings.repo_dir
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, CONFIG, to_table(rows))
        totals: Counter[str] = Counter()
        for record in history:
            totals.update(record["counts"])
        pq.write_table(to_table(funnel_rows(CONFIG, dict(totals)), FUNNEL_SCHEMA),
                       out / "funnel.parquet")
        summary = {
            "run_id": self.run_id,
            "flows": [FLOW],
            "config": settings.model_dump(mode="json"),
            "seed": settings.seed,
            "engines": {"sampler": engine_record(settings.engine, {
                **settings.sampling, "max_new_tokens": settings.max_new_tokens})},
            "split": self.split,
            "iterations": history,
            "best_iteration": best,
            "counts": dict(totals),
            "rows": {CONFIG: len(rows)},
            "tokens": priced_tokens(self.tokens, settings.price_in, settings.price_out),
            **({"not_done": self.not_done} if self.not_done else {}),
            "wall_time_s": round(time.time() - self.started, 1),
        }
        write_run_record(out, summary)
        return json.loads((out / RUN_FILE).read_text())
