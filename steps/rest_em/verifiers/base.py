"""The verifier protocol: what ReST-EM needs from the binary check of one problem kind.

A verifier owns everything that depends on how a kind of problem is checked (ReST-EM, Singh et
al. 2023, section 3: "problems that can be checked automatically, with a binary result"):

- the prompt: an instruction and one worked example, in the format `extract` reads back;
- the reference: what a problem file must hold (`reference_field`) and how it is read;
- answer extraction: the part of a sampled solution the check looks at;
- the check: one `Verdict` per extracted answer;
- majority vote: whether answers can be voted on, and the key equal answers share;
- preflight: a one-line `UserError` before any work if the check cannot run here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

Verdict = Literal["pass", "fail", "timeout", "error"]
"""pass: accepted (reward 1); fail: wrong; timeout: the check's time limit; error: the verifier
itself broke (a crashed worker or launcher), never a wrong or unreadable answer."""


class Verifier(ABC):
    """The binary check of one problem kind; instances are created once per scoring process.

    Subclasses set the class attributes and implement `extract` and `check`. `check` must return
    a verdict for any input (a wrong, malformed or hostile answer is a `fail`).
    """

    kind: ClassVar[str]
    """The problem kind in problem files (`kind` column) and rows (`subcategory`)."""
    reference_field: ClassVar[Literal["answer", "tests"]]
    """The problem-file column holding the reference this verifier checks against."""
    instruction: ClassVar[str]
    example: ClassVar[tuple[str, str]]
    """One worked example, (question, solution): small models follow a shown format far better
    than a described one."""
    majority_vote: ClassVar[bool] = False
    """Whether extracted answers can be voted on (self-consistency, Wang et al. 2023)."""

    @classmethod
    def preflight(cls) -> None:
        """Check, before any work starts, that this verifier can run on this machine.

        Raises:
            UserError: the check cannot run here; the message says how to fix that.
        """
        return None

    @classmethod
    def read_reference(cls, value: Any) -> Any:
        """The reference as `check` takes it, from the value in a problem file.

        Raises:
            ValueError: the value is not a valid reference; the message says what it must be.
        """
        return value

    @staticmethod
    @abstractmethod
    def extract(text: str) -> str | None:
        """The part of a sampled solution that is checked, or None if there is none."""

    @abstractmethod
    def check(self, reference: Any, extracted: str) -> tuple[Verdict, str]:
        """(verdict, detail) of one extracted answer against the problem's reference."""

    @classmethod
    def vote_key(cls, extracted: str) -> str:
        """The key under which equal answers are counted together in a majority vote."""
        return extracted

    def close(self) -> None:
        """Release what the checks started (worker processes); the verifier can restart."""
        return None
