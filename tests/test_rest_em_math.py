"""ReST-EM math reward: final-answer extraction, number reading, the check, and its worker.

ReST-EM trains on what the verifier accepts, so a false pass teaches a wrong answer (issue 14):
the table below holds one row per kind of fault, with similar instances of each.
"""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from steps.rest_em.answers import extract_code, extract_final_answer, normalise_answer, read_number
from steps.rest_em.math_verifier import MathVerifyWorker, math_verify_check


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


@pytest.mark.parametrize(("text", "value", "percent"), [
    ("1,234", Fraction(1234), False),
    ("1,234,567.5", Fraction(2469135, 2), False),
    ("1{,}234", Fraction(1234), False),
    ("1\\,234", Fraction(1234), False),
    ("\\$18.50", Fraction(37, 2), False),
    ("$18.50", Fraction(37, 2), False),
    ("€5", Fraction(5), False),
    ("$\\$1,000.00$", Fraction(1000), False),
    ("-\\frac{3}{4}", Fraction(-3, 4), False),
    ("\\frac12", Fraction(1, 2), False),
    ("1 1/2", Fraction(3, 2), False),
    ("12 apples.", Fraction(12), False),
    ("12 \\text{ cm}^2", Fraction(12), False),
    ("x = 5", Fraction(5), False),
    ("10\\%", Fraction(10), True),
    ("0,1", None, None),  # a pair, not a decimal
    ("1,23", None, None),
    ("2^{10}", None, None),  # more than the leading number
    ("12 thousand", None, None),
    ("2 pi", None, None),
    ("5 apples and 3 pears", None, None),
    ("12:00", None, None),
    ("1/0", None, None),
])
def test_read_number(text: str, value: Fraction | None, percent: bool | None) -> None:
    number = read_number(text)
    assert (number and (number.value, number.percent)) == (value and (value, percent))


# (gold, candidate, verdict): one block per kind of fault of issue 14, plus the pairs that
# must keep passing.
CHECKS = [
    # a tuple is not a decimal; thousands separators only in groups of three
    ("0,1", "0.1", "fail"), ("1,5", "1.5", "fail"), ("12,50", "12.5", "fail"),
    ("0.1", "0,1", "fail"), ("1,23", "123", "fail"),
    ("1234", "1,234", "pass"), ("1,234,567", "1234567", "pass"), ("1000", "1{,}000", "pass"),
    ("0,1", "0, 1", "pass"), ("(1,2)", "(1, 2)", "pass"),
    # currency signs and units around the number
    ("18.50", "\\$18.50", "pass"), ("18.5", "$18.50", "pass"), ("1000", "\\$1,000.00", "pass"),
    ("5", "€5", "pass"), ("18.50", "18.50 dollars", "pass"), ("12", "12 apples", "pass"),
    ("12", "\\boxed{12}", "pass"),
    # a partial numeric parse: the number in front is not the answer
    ("2", "2^{10}", "fail"), ("2", "2 \\times 5", "fail"), ("5", "5 + 3", "fail"),
    ("1", "1 1/2", "fail"), ("12", "12 thousand", "fail"), ("2", "2 pi", "fail"),
    ("5", "5 apples and 3 pears", "fail"), ("3", "3/4", "fail"), ("2^{10}", "2", "fail"),
    ("1024", "2^{10}", "pass"), ("2^{10}", "1024", "pass"), ("10", "2 \\times 5", "pass"),
    # rationals compare exactly, not within a float tolerance
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", "fail"), ("10^{-20}", "0", "fail"),
    ("123456789", "123456788", "fail"), ("\\frac{1}{3}", "0.333333", "fail"),
    ("0.1", "0.1000001", "fail"), ("\\frac{1}{2^{99}}", "2^{-99}", "pass"),
    ("0.5", "\\frac{1}{2}", "pass"), ("18.5", "18.50", "pass"),
    # an answer math-verify cannot read is a wrong answer, not a verifier error
    ("12:00", "1:00", "fail"), ("3", "3:00", "fail"), ("1", "\\frac{{{", "fail"),
    ("1", "}}}", "fail"), ("1", "1/0", "fail"), ("\\frac{1}{0}", "\\frac{2}{0}", "fail"),
    ("12:00", "12:00", "pass"),
]


@pytest.mark.parametrize(("gold", "answer", "verdict"), CHECKS)
def test_math_verify_check(gold: str, answer: str, verdict: str) -> None:
    assert math_verify_check(gold, answer) == verdict


@pytest.fixture(scope="module")
def verifier() -> MathVerifyWorker:
    with MathVerifyWorker() as math_verifier:
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
def test_math_verifier_accepts_equal_pairs(verifier: MathVerifyWorker, gold: str, answer: str) -> None:
    assert verifier(gold, answer) == "pass"


@pytest.mark.parametrize(("gold", "answer"), [
    ("42", "43"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("6", "-6"),
    ("3", "x"),
    ("(-\\infty,2)", "x<2"),  # …but not the other way round (math-verify is not symmetric)
    ("7", "seven apples and a pear"),
])
def test_math_verifier_rejects_unequal_pairs(verifier: MathVerifyWorker, gold: str,
                                             answer: str) -> None:
    assert verifier(gold, answer) == "fail"


def test_malformed_answers_are_wrong_answers(verifier: MathVerifyWorker) -> None:
    for answer in ("\\frac{{{", "}}}", "$$", "\\boxed{", "1/0", "12:00"):
        assert verifier("1", answer) == "fail"
    assert verifier("1", "x" * 2000) in ("fail", "timeout")  # slow to parse on a busy machine


def _slow_check(gold: str, answer: str, time_limit: int) -> str:
    """A check that hangs on one input, as sympy can in C code where no alarm reaches it."""
    if answer == "hang":
        time.sleep(60)
    return "pass" if gold == answer else "fail"


def test_a_hung_check_times_out_and_the_worker_restarts() -> None:
    with MathVerifyWorker(check=_slow_check, hard_timeout=1.0) as verifier:
        assert verifier("1", "1") == "pass"
        assert verifier("1", "hang") == "timeout"
        assert verifier("2", "2") == "pass"  # a fresh worker answers the next pair


def _broken_check(gold: str, answer: str, time_limit: int) -> str:
    if answer == "bug":
        raise RuntimeError("a bug in the check")
    return "pass" if gold == answer else "fail"


def test_a_check_that_raises_is_an_error_and_the_worker_goes_on() -> None:
    with MathVerifyWorker(check=_broken_check) as verifier:
        assert verifier("1", "bug") == "error"
        assert verifier("1", "1") == "pass"
