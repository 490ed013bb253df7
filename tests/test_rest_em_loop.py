"""The iteration loop's choices: made on the validation split, never on the held-out split."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from steps.rest_em import loop
from steps.rest_em.config import RestEmConfig
from steps.rest_em.estep import EStepResult, ProblemResult
from steps.rest_em.mstep_types import BaseWeights, MStepResult
from steps.rest_em.problems import Problem
from steps.rest_em.scoring import Scored


def test_epoch_and_stopping_are_chosen_on_validation_and_heldout_is_only_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub E-step: the model of iteration i solves validation problems only at i = 1 and every
    held-out problem at i = 2. The loop must stop after iteration 2 (validation fell) and keep
    iteration 1, however good iteration 2 looks on held-out; the M-step sees validation problems."""
    settings = RestEmConfig(count=40, k=2, train=True, iterations=3, heldout_fraction=0.25,
                            validation_fraction=0.2, output_dir=tmp_path / "repo")
    tuned: list[list[str]] = []
    estep_sets: list[set[str]] = []
    state = {"iteration": 0}

    def run_estep(problems: list[Problem], engine: str, **_: Any) -> EStepResult:
        estep_sets.append({p.id for p in problems})
        iteration = state["iteration"]
        results = []
        for p in problems:
            # Validation: solved at iteration 1 only; held-out: at 2 only; train: always.
            solved = (iteration == 1 if p.id in validation_ids
                      else p.id not in heldout_ids or iteration == 2)
            outcome = Scored("pass" if solved else "fail", p.reference)
            results.append(ProblemResult(p, ["Answer: x"] * 2, [outcome] * 2, [0] if solved else [],
                                         outcome, 10))
        return EStepResult(results, 1.0)

    def fine_tune(base: BaseWeights, rows: list[dict[str, Any]], validation: list[Problem],
                  output_dir: Path, **_: Any) -> MStepResult:
        tuned.append([p.id for p in validation])
        state["iteration"] += 1
        return MStepResult(f"llamacpp:it{state['iteration']}.gguf", "m", output_dir, len(rows),
                           [0.0, 1.0], 1, 1.0)

    monkeypatch.setattr(loop, "run_estep", run_estep)
    monkeypatch.setattr(loop, "fine_tune", fine_tune)
    monkeypatch.setattr(loop, "check_train_extra", lambda: None)
    monkeypatch.setattr(loop, "export_base", lambda base, path: "llamacpp:base.gguf")
    monkeypatch.setattr(loop, "serve_engines", lambda specs, log_dir: nullcontext({}))  # no files
    problems = loop.load_problems(settings.problems, count=settings.count, seed=settings.seed)
    rest, heldout = loop.split_heldout(problems, 0.25)
    train, validation = loop.split_heldout(rest, 0.2, split="validation")
    validation_ids, heldout_ids = {p.id for p in validation}, {p.id for p in heldout}

    run = loop.run_rest_em(settings)

    assert run["split"] == {"train": 24, "validation": 6, "heldout": 10}
    assert tuned == [[p.id for p in validation]] * 2  # the M-step picks its epoch on validation
    assert estep_sets[0] == {p.id for p in problems}
    heldout_by_iteration = [r["heldout"]["greedy_pass@1"] for r in run["iterations"]]
    validation_by_iteration = [r["validation"]["greedy_pass@1"] for r in run["iterations"]]
    assert validation_by_iteration == [0.0, 1.0, 0.0] and heldout_by_iteration == [0.0, 0.0, 1.0]
    assert run["best_iteration"] == 1 and len(run["iterations"]) == 3  # stopped: validation fell
    assert json.loads((settings.repo_dir / "run.json").read_text())["best_iteration"] == 1
