"""The few-shot prompt a problem is sampled with (and, in the M-step, trained with).

ReST-EM trains on exactly the prompt it sampled with, so the prompt is part of every written row:
`messages` = these prompt messages + the kept solution.
"""

from __future__ import annotations

from steps.rest_em.problems import Problem

MATH_INSTRUCTION = ("Solve the problem step by step. End with a final line of the form "
                    "'Answer: N' where N is the number.")
CODE_INSTRUCTION = ("Solve the problem in Python. Give the complete program in one "
                    "```python code block.")

# One worked example per kind: small models follow a shown format far better than a described one.
MATH_EXAMPLE = (
    "Lea has 5 pens. Lea gets 3 more pens, then gives away 2 pens. How many pens does Lea "
    "have now?",
    "Lea starts with 5 pens. After getting 3 more she has 5 + 3 = 8. After giving away 2 she "
    "has 8 - 2 = 6.\nAnswer: 6",
)
CODE_EXAMPLE = (
    "Read two integers from one line of standard input and print their sum.",
    "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
)


def solution_prompt(problem: Problem) -> list[dict[str, str]]:
    """Chat messages: the instruction with one worked example, then the problem."""
    instruction, (example_q, example_a) = (
        (MATH_INSTRUCTION, MATH_EXAMPLE) if problem.kind == "math"
        else (CODE_INSTRUCTION, CODE_EXAMPLE))
    return [
        {"role": "user", "content": f"{instruction}\n\n{example_q}"},
        {"role": "assistant", "content": example_a},
        {"role": "user", "content": problem.question},
    ]
