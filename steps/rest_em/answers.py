"""Pull the final answer (math) or the program (code) out of a sampled solution.

A solution with no recognisable final answer or code block is "unparseable", counted apart from
wrong answers: the two call for different fixes (the prompt's format vs the model's skill).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: 6", "**Answer:** 6", "The final answer is 6. I hope it is correct." (Minerva)
_ANSWER = re.compile(r"(?im)(?:final\s+answer|answer)\s*(?:is\b\s*:?|:|=)\s*\**\s*(.+?)\s*$")
_MINERVA_TAIL = re.compile(r"(?i)\.?\s*I hope it is correct\.?$")
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL)


def last_boxed(text: str) -> str | None:
    r"""The content of the last \boxed{…} / \fbox{…}, braces matched by counting (Hendrycks)."""
    starts = list(_BOXED.finditer(text))
    if not starts:
        return None
    depth, begin = 1, starts[-1].end()
    for position in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[begin:position].strip()
    return None


def extract_final_answer(text: str) -> str | None:
    """The last boxed answer, else the last 'Answer: …' / 'final answer is …' line, else None."""
    boxed = last_boxed(text)
    if boxed:
        return boxed
    matches = _ANSWER.findall(text)
    if not matches:
        return None
    answer = matches[-1]
    while nested := _ANSWER.findall(answer):  # "Final Answer: The final answer is X"
        answer = nested[-1]
    answer = _MINERVA_TAIL.sub("", answer).strip().strip("*").strip()
    answer = answer.removesuffix(".").strip()
    if answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    return answer or None


def extract_code(text: str) -> str | None:
    """The last fenced code block (```python or bare ```), else None."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1] if blocks and blocks[-1].strip() else None


def normalise_answer(answer: str) -> str:
    r"""The string form two answers are compared in when math-verify cannot decide.

    Strips, lowercases, drops `$`, unwraps \boxed{}, removes thousands separators and a trailing
    `.0`, so "$1,000.0$" and "\boxed{1000}" compare equal.
    """
    text = answer.strip()
    text = last_boxed(text) or text
    text = text.replace("$", "").strip().lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.0+$", "", text)
    return text.removesuffix(".").strip()


@dataclass(frozen=True)
class NumericAnswer:
    """An answer that is one exact number: `value`, and whether it was written as a percent."""

    value: Fraction
    percent: bool = False

    def readings(self) -> set[Fraction]:
        """The values the answer may mean: 10% is 10 or 1/10 (math-verify's rule for 9% = 9)."""
        return {self.value, self.value / 100} if self.percent else {self.value}

    def key(self) -> str:
        """A canonical text: equal numbers written differently ("1,234", "$1234.0") share it."""
        return f"{self.value}{'%' if self.percent else ''}"


_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_DIGIT_GROUP_MARK = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d)")  # LaTeX "1{,}234", "1\,234"
_SPACING = re.compile(r"\\[,;:! ]|~")
_VARIABLE_PREFIX = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*")  # "x = 5" (Hendrycks drops it)
_CURRENCY = r"(?:\\\$|\$|US\$|USD|EUR|GBP|€|£|¥|₹|\\euro|\\pounds)"
# Thousands separators only in groups of three ("1,234,567"): any other comma makes a tuple
# ("0,1" is the pair 0, 1, not the decimal 0.1).
_DECIMAL = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\.?|\.\d+"
_NUMBER = re.compile(
    rf"^(?P<sign>[-+]?)\s*{_CURRENCY}?\s*(?:"
    rf"(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)"  # mixed number "1 1/2"
    rf"|\\[dt]?frac\s*\{{\s*(?P<fnum>\d+)\s*\}}\s*\{{\s*(?P<fden>\d+)\s*\}}"
    rf"|\\[dt]?frac(?P<snum>\d)(?P<sden>\d)"  # "\frac12"
    rf"|(?P<pnum>\d+)\s*/\s*(?P<pden>\d+)"
    rf"|(?P<decimal>{_DECIMAL}))"
    rf"(?:\s*(?P<percent>\\%|%|percent\b))?(?P<rest>.*)$")
# A unit after the number ("12 apples", "18.50 dollars", "3 km/h", "4 cm^2"): words of two or more
# letters, separated by spaces. Words that change the number ("12 thousand", "2 pi", "3 times 4")
# are not units, so such answers are left to math-verify.
_UNIT = re.compile(r"^(?:\s+[A-Za-z]{2,}(?:\^[23]|[²³])?(?:/[A-Za-z]+)?)*\s*\.?\s*$")
_NOT_UNITS = frozenset({
    "pi", "sqrt", "root", "log", "ln", "sin", "cos", "tan", "exp", "mod", "times", "plus", "minus",
    "over", "divided", "by", "and", "or", "to", "point", "squared", "cubed", "power", "dozen",
    "dozens", "hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion",
    "billions", "trillion", "half", "halves", "third", "thirds", "quarter", "quarters", "percent",
})


def read_number(text: str) -> NumericAnswer | None:
    r"""The exact number an answer states, or None if it is not one plain number.

    Reads integers, decimals, thousands separators in groups of three, a leading currency sign
    ("\$18.50", "€5"), a trailing percent, fractions ("3/4", "\frac{3}{4}", "\frac34"), mixed
    numbers ("1 1/2") and trailing unit words ("12 apples"), inside `$…$` or `\boxed{}` or not.
    Anything else after the number (an exponent, an operator, another number) gives None: the
    number in front is not the answer ("2^{10}" is not 2).
    """
    text = text.strip()
    while len(text) > 1 and text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    if text.startswith(("\\boxed", "\\fbox")):
        text = last_boxed(text) or text
    text = _WRAPPERS.sub(r" \1", text)
    text = _SPACING.sub(" ", _DIGIT_GROUP_MARK.sub(",", text)).replace("−", "-").strip()
    text = _VARIABLE_PREFIX.sub("", text)
    match = _NUMBER.match(text)
    if match is None:
        return None
    rest = match["rest"]
    if not _UNIT.match(rest) or _NOT_UNITS & {word.lower() for word in re.findall(r"[A-Za-z]+", rest)}:
        return None
    if match["decimal"] is not None:
        value = Fraction(match["decimal"].replace(",", "").rstrip(".") or "0")
    else:
        numerator, denominator = next(
            (match[n], match[d]) for n, d in (("num", "den"), ("fnum", "fden"), ("snum", "sden"),
                                              ("pnum", "pden")) if match[n] is not None)
        if int(denominator) == 0:
            return None
        value = Fraction(int(numerator), int(denominator)) + int(match["whole"] or 0)
    return NumericAnswer(-value if match["sign"] == "-" else value, match["percent"] is not None)
