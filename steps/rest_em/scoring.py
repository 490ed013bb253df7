"""The binary reward of one sampled solution, with the reason when it is 0.

Every sample ends in exactly one outcome, so counts add up to the samples drawn:
    pass         the verifier accepted it (reward 1)
    fail         wrong answer, failed test, crash of the candidate, an answer no check can read
    timeout      the verifier's time limit (math-verify, or the sandbox's CPU/wall limits)
    error        the verifier itself broke on this sample (a crashed worker or launcher)
    unparseable  no final answer / no code block found
    no_output    the engine returned nothing for this sample
The first four are the verifier's `Verdict`; the last two are decided before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from steps.rest_em.problems import Problem
from steps.rest_em.verifiers.base import Verdict, Verifier
from steps.rest_em.verifiers.registry import verifier_for

Outcome = Literal[Verdict, Literal["unparseable", "no_output"]]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


@dataclass(frozen=True)
class Scored:
    """One sample's outcome, the answer or program the verifier saw, and why it failed."""

    outcome: Outcome
    extracted: str | None = None
    detail: str = ""

    @property
    def reward(self) -> int:
        """The binary reward of ReST-EM (Singh et al. 2023, §3): 1 for a pass, else 0."""
        return int(self.outcome == "pass")


class SolutionScorer:
    """Extracts and verifies samples with their kind's verifier; never raises.

    A verifier is created on the first problem of its kind (starting a worker or sandbox only
    when needed) and kept for the next ones.
    """

    def __init__(self) -> None:
        """No verifier yet: each kind's starts on its first problem."""
        self._verifiers: dict[str, Verifier] = {}

    def __call__(self, problem: Problem, text: str | None) -> Scored:
        """The outcome of one sampled solution `text` of `problem` (None: the engine gave none)."""
        if text is None:
            return Scored("no_output")
        try:
            verifier = self._verifiers.get(problem.kind)
            if verifier is None:
                verifier = self._verifiers[problem.kind] = verifier_for(problem.kind)()
            extracted = verifier.extract(text)
            if extracted is None:
                return Scored("unparseable")
            verdict, detail = verifier.check(problem.reference, extracted)
            return Scored(verdict, extracted, detail)
        except Exception as error:  # noqa: BLE001 - a verifier bug must cost one sample, not the run
            return Scored("error", detail=f"{type(error).__name__}: {error}"[:300])

    def close(self) -> None:
        """Close every verifier started so far (worker processes, sandboxes)."""
        for verifier in self._verifiers.values():
            verifier.close()
        self._verifiers.clear()
