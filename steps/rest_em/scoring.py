"""The binary reward of one sampled solution, with the reason when it is 0.

Every sample ends in exactly one outcome, so counts add up to the samples drawn:
    pass         the verifier accepted it (reward 1)
    fail         wrong answer, failed test, crash of the candidate
    timeout      the verifier's time limit (math-verify, or the sandbox's CPU/wall limits)
    error        the verifier itself failed on this sample
    unparseable  no final answer / no code block found
    no_output    the engine returned nothing for this sample
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from steps.rest_em.answers import extract_code, extract_final_answer
from steps.rest_em.math_verifier import MathVerifier
from steps.rest_em.problems import Problem
from steps.rest_em.sandbox import CodeSandbox

Outcome = Literal["pass", "fail", "timeout", "error", "unparseable", "no_output"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "timeout", "error", "unparseable", "no_output")


@dataclass(frozen=True)
class Scored:
    outcome: Outcome
    extracted: str | None = None  # the final answer or program the verifier saw
    detail: str = ""

    @property
    def reward(self) -> int:
        return int(self.outcome == "pass")


class SolutionScorer:
    """Extracts and verifies samples; starts each verifier on first use and never raises."""

    def __init__(self) -> None:
        self._math: MathVerifier | None = None
        self._sandbox: CodeSandbox | None = None

    def __call__(self, problem: Problem, text: str | None) -> Scored:
        if text is None:
            return Scored("no_output")
        try:
            if problem.kind == "math":
                answer = extract_final_answer(text)
                if answer is None:
                    return Scored("unparseable")
                self._math = self._math or MathVerifier()
                return Scored(self._math(problem.answer or "", answer), answer)
            code = extract_code(text)
            if code is None:
                return Scored("unparseable")
            self._sandbox = self._sandbox or CodeSandbox()
            verdict, detail = self._sandbox(code, problem.tests or "")
            return Scored(verdict, code, detail)
        except Exception as error:  # noqa: BLE001 - a verifier bug must cost one sample, not the run
            return Scored("error", detail=f"{type(error).__name__}: {error}"[:300])

    def close(self) -> None:
        if self._math is not None:
            self._math.close()
