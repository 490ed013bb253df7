"""ReST-EM math reward: final-answer extraction, normalisation, and the math-verify worker."""

from __future__ import annotations

import time

import pytest

from steps.rest_em.answers import extract_code, extract_final_answer, normalise_answer
from steps.rest_em.math_verifier import MathVerifier


@pytest.mark.parametrize(("text", "expected"), [
    ("3 + 4 = 7.\nAnswer: 7", "7"),
    ("**Answer:** 12.", "12"),
    ("The answer is: 3", "3"),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{\\frac{3}{4}} wins", "\\frac{3}{4}"),
    ("Answer: 5\nOn reflection, Answer: 6", "6"),
    ("no final line here, 42", None),
])
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_extract_code_takes_the_last_fenced_block() -> None:
    text = "Try:\n```python\nprint(1)\n```\nBetter:\n```\nprint(2)\n```"
    assert extract_code(text) == "print(2)\n"
    assert extract_code("print(3) without a fence") is None


@pytest.mark.parametrize(("a", "b"), [
    ("$1,000.0$", "1000"), ("\\boxed{42}", "42"), (" 7. ", "7"), ("ABC", "abc")])
def test_normalise_answer_equal_pairs(a: str, b: str) -> None:
    assert normalise_answer(a) == normalise_answer(b)


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    with MathVerifier() as math_verifier:
        yield math_verifier


@pytest.mark.parametrize(("gold", "answer"), [
    ("42", "42"),
    ("0.5", "\\frac{1}{2}"),
    ("\\frac{1}{2}", "1/2"),
    ("\\frac{2}{4}", "\\dfrac12"),
    ("1000", "1,000"),
    ("10\\%", "0.1"),
    ("12", "12 apples"),
    ("x<2", "\\boxed{(-\\infty,2)}"),  # gold first: an inequality gold accepts the interval
])
def test_math_verifier_accepts_equal_pairs(verifier: MathVerifier, gold: str, answer: str) -> None:
    assert verifier(gold, answer) == "pass"


@pytest.mark.parametrize(("gold", "answer"), [
    ("42", "43"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("6", "-6"),
    ("3", "x"),
    ("(-\\infty,2)", "x<2"),  # …but not the other way round (math-verify is not symmetric)
    ("7", "seven apples and a pear"),
])
def test_math_verifier_rejects_unequal_pairs(verifier: MathVerifier, gold: str,
                                             answer: str) -> None:
    assert verifier(gold, answer) == "fail"


def test_malformed_answers_get_a_verdict_not_an_exception(verifier: MathVerifier) -> None:
    for answer in ("\\frac{{{", "}}}", "$$", "\\boxed{", "1/0", "x" * 2000):
        assert verifier("1", answer) in ("fail", "error", "timeout")


def _slow_check(gold: str, answer: str, time_limit: int) -> str:
    """A check that hangs on one input, as sympy can in C code where no alarm reaches it."""
    if answer == "hang":
        time.sleep(60)
    return "pass" if gold == answer else "fail"


def test_a_hung_check_times_out_and_the_worker_restarts() -> None:
    with MathVerifier(check=_slow_check, hard_timeout=1.0) as verifier:
        assert verifier("1", "1") == "pass"
        assert verifier("1", "hang") == "timeout"
        assert verifier("2", "2") == "pass"  # a fresh worker answers the next pair
