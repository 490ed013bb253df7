"""The few-shot prompt a problem is sampled with (and, in the M-step, trained with).

ReST-EM trains on exactly the prompt it sampled with, so the prompt is part of every written row:
`messages` = these prompt messages + the kept solution. The instruction and the worked example
come from the problem kind's verifier, which reads back the format they show.
"""

from __future__ import annotations

from steps.rest_em.problems import Problem
from steps.rest_em.verifiers.registry import verifier_for


def solution_prompt(problem: Problem) -> list[dict[str, str]]:
    """Chat messages: the instruction with one worked example, then the problem."""
    verifier = verifier_for(problem.kind)
    example_question, example_solution = verifier.example
    return [
        {"role": "user", "content": f"{verifier.instruction}\n\n{example_question}"},
        {"role": "assistant", "content": example_solution},
        {"role": "user", "content": problem.question},
    ]
