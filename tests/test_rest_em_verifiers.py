"""The verifier registry and protocol: every registered kind is complete, unknown kinds fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps.errors import UserError
from steps.rest_em.problems import Problem, load_problems
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.scoring import OUTCOMES, SolutionScorer
from steps.rest_em.verifiers.base import Verdict, Verifier
from steps.rest_em.verifiers.registry import VERIFIERS, verifier_for


@pytest.mark.parametrize("kind", sorted(VERIFIERS))
def test_each_verifier_reads_back_its_own_worked_example(kind: str) -> None:
    verifier = verifier_for(kind)
    assert issubclass(verifier, Verifier) and verifier.kind == kind
    question, solution = verifier.example
    assert verifier.instruction and question
    assert verifier.extract(solution) is not None  # the prompt shows the format extract reads
    problem = Problem("p", "What now?", kind, **{verifier.reference_field: "x"})
    prompt = solution_prompt(problem)
    assert [m["role"] for m in prompt] == ["user", "assistant", "user"]
    assert prompt[0]["content"].startswith(verifier.instruction) and prompt[1]["content"] == solution


def test_one_verdict_type_the_outcomes_extend() -> None:
    from typing import get_args

    assert OUTCOMES[:4] == get_args(Verdict) == ("pass", "fail", "timeout", "error")
    assert set(OUTCOMES[4:]) == {"unparseable", "no_output"}


def test_an_unknown_kind_is_one_user_error_naming_the_known_kinds(tmp_path: Path) -> None:
    known = ", ".join(sorted(VERIFIERS))
    with pytest.raises(UserError, match=f"unknown problem kind 'proof'; known kinds: {known}$"):
        verifier_for("proof")
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n"
                    + json.dumps({"question": "q", "tests": "assert True", "kind": "Code"}) + "\n")
    with pytest.raises(UserError) as error:
        load_problems(str(path))
    assert f"{path} row 2" in str(error.value) and "\n" not in str(error.value)


def test_a_kind_named_in_the_file_picks_its_verifier(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "4", "kind": "math"}) + "\n")
    (problem,) = load_problems(str(path))
    assert (problem.kind, problem.reference) == ("math", "4")


def test_the_scorer_uses_the_kinds_verifier_and_closes_it() -> None:
    problem = Problem("p", "2 + 2?", "math", answer="4")
    scorer = SolutionScorer()
    try:
        assert scorer(problem, "2 + 2 = 4.\nAnswer: 4").outcome == "pass"
        assert scorer(problem, "Answer: 4.5").outcome == "fail"
        assert scorer(problem, "no answer line").outcome == "unparseable"
        assert scorer(problem, None).outcome == "no_output"
    finally:
        scorer.close()
    # A kind without a verifier never gets past loading; should one reach the scorer, it costs
    # one sample counted as an error, not the run.
    assert scorer(Problem("q", "?", "proof", answer="1"), "Answer: 1").outcome == "error"


def test_math_preflight_passes_here() -> None:
    verifier_for("math").preflight()
