"""Math problems: the final answer of a solution against the reference answer.

The reference is a final answer, or a GSM8K-style worked solution whose final answer follows
`####` (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems"); thousands
separators there ("1,234") are read as such. The check is `math_verifier.math_verify_check`, run
in a worker process (`MathVerifyWorker`) so that math-verify's time limits work.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Literal

from typing_extensions import override

from steps.errors import UserError
from steps.rest_em.answers import extract_final_answer, normalise_answer, read_number
from steps.rest_em.math_verifier import MathVerifyWorker
from steps.rest_em.verifiers.base import Verdict, Verifier

GSM8K_MARK = "####"


class FinalAnswerVerifier(Verifier):
    """pass when the last boxed or 'Answer:' line equals the reference (math-verify, gold first)."""

    kind: ClassVar[str] = "math"
    reference_field: ClassVar[Literal["answer", "tests"]] = "answer"
    instruction: ClassVar[str] = (
        "Solve the problem step by step. End with a final line of the form 'Answer: N' where N "
        "is the number.")
    example: ClassVar[tuple[str, str]] = (
        "Lea has 5 pens. Lea gets 3 more pens, then gives away 2 pens. How many pens does Lea "
        "have now?",
        "Lea starts with 5 pens. After getting 3 more she has 5 + 3 = 8. After giving away 2 she "
        "has 8 - 2 = 6.\nAnswer: 6",
    )
    majority_vote: ClassVar[bool] = True

    def __init__(self) -> None:
        """No worker yet: it starts on the first check."""
        self._worker: MathVerifyWorker | None = None

    @classmethod
    def preflight(cls) -> None:
        """Check that math-verify is installed.

        Raises:
            UserError: math-verify is not installed.
        """
        if importlib.util.find_spec("math_verify") is None:
            raise UserError("math problems need math-verify: pip install 'math-verify>=0.9'")

    @classmethod
    def read_reference(cls, value: Any) -> str:
        """The final answer: the value itself, or what follows the last `####` (GSM8K format).

        Raises:
            ValueError: the value is empty, or nothing follows `####`.
        """
        text = str(value).strip()
        if GSM8K_MARK in text:
            text = text.rsplit(GSM8K_MARK, 1)[1].strip()
            if read_number(text) is not None:  # one number: its commas separate thousands
                text = text.replace(",", "")
        if not text:
            raise ValueError("'answer' must hold a final answer (after '####' in GSM8K format)")
        return text

    @staticmethod
    @override
    def extract(text: str) -> str | None:
        return extract_final_answer(text)

    @override
    def check(self, reference: Any, extracted: str) -> tuple[Verdict, str]:
        self._worker = self._worker or MathVerifyWorker()
        return self._worker(str(reference), extracted), ""

    @classmethod
    def vote_key(cls, extracted: str) -> str:
        """The exact number when the answer is one ("1,234" and "$1234.0" vote together)."""
        number = read_number(extracted)
        return number.key() if number is not None else normalise_answer(extracted)

    @override
    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
