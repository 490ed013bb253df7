"""Code problems: the solution's program against the problem's unit tests, in the sandbox.

Tests are Python source with asserts that run after the program, or a list of
{"input", "output"} stdin/stdout pairs; pass only if every test passes (APPS, Hendrycks et al.
2021). The program never runs in this process (`steps.rest_em.sandbox`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from typing_extensions import override

from steps.rest_em.answers import extract_code
from steps.rest_em.sandbox import CodeSandbox, isolation_mode
from steps.rest_em.verifiers.base import Verdict, Verifier


class UnitTestVerifier(Verifier):
    """pass when the last fenced code block passes every test of the problem."""

    kind: ClassVar[str] = "code"
    reference_field: ClassVar[Literal["answer", "tests"]] = "tests"
    instruction: ClassVar[str] = (
        "Solve the problem in Python. Give the complete program in one ```python code block.")
    example: ClassVar[tuple[str, str]] = (
        "Read two integers from one line of standard input and print their sum.",
        "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
    )

    def __init__(self) -> None:
        """No sandbox yet: it is set up on the first check."""
        self._sandbox: CodeSandbox | None = None

    @classmethod
    def preflight(cls) -> None:
        """Check that code can run isolated here (`steps.rest_em.sandbox.isolation_mode`).

        Raises:
            UserError: code cannot be run isolated on this machine (see `isolation_mode`).
        """
        isolation_mode()

    @classmethod
    def read_reference(cls, value: Any) -> str | list[dict[str, str]]:
        """The tests as given: Python assert source, or a list of {"input", "output"} pairs.

        Raises:
            ValueError: the tests are neither assert source nor a list of input/output pairs.
        """
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list) and value and all(
                isinstance(case, dict) and isinstance(case.get("input"), str)
                and isinstance(case.get("output"), str) for case in value):
            return value
        raise ValueError("'tests' must be Python assert source or a list of "
                         "{\"input\": …, \"output\": …} objects")

    @staticmethod
    @override
    def extract(text: str) -> str | None:
        return extract_code(text)

    @override
    def check(self, reference: Any, extracted: str) -> tuple[Verdict, str]:
        self._sandbox = self._sandbox or CodeSandbox()
        return self._sandbox(extracted, reference)
