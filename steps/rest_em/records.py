"""Kept solutions as ROW_SCHEMA rows: the prompt they were sampled with, then the solution.

ROW_SCHEMA has no reward column; every written row has reward 1 (only verified solutions are
kept), and the reward, outcome and sampling settings go in `generation_params` (JSON).
"""

from __future__ import annotations

import json
from typing import Any

from steps.rest_em.estep import ProblemResult
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.verifiers.registry import verifier_for
from steps.rows import stable_id

FLOW = "rest_em"
CONFIG = "rest_em"


def kept_rows(result: ProblemResult, *, iteration: int, model_id: str, run_id: str,
              sampling: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per kept solution of one problem (at most the cap)."""
    problem = result.problem
    answers = verifier_for(problem.kind).reference_field == "answer"  # not a whole program
    rows = []
    for index in result.kept:
        solution = result.solutions[index]
        scored = result.scored[index]
        params = {**sampling, "sample_index": index, "samples_per_problem": len(result.solutions),
                  "iteration": iteration, "reward": scored.reward, "outcome": scored.outcome,
                  "extracted_answer": scored.extracted if answers else None}
        rows.append({
            "id": stable_id(FLOW, problem.id, model_id, iteration, index, sampling),
            "messages": [*solution_prompt(problem), {"role": "assistant", "content": solution}],
            "flow": FLOW,
            "config": CONFIG,
            "subcategory": problem.kind,
            "seed_id": problem.id,
            "seed_source": problem.source,
            "reference_answer": problem.answer,
            "teacher_model": model_id,
            "generation_params": json.dumps(params, sort_keys=True),
            "run_id": run_id,
        })
    return rows
