"""Pull the final answer (math) or the program (code) out of a sampled solution.

A solution with no recognisable final answer or code block is "unparseable", counted apart from
wrong answers: the two call for different fixes (the prompt's format vs the model's skill).
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: 6", "**Answer:** 6", "The final answer is 6. I hope it is correct." (Minerva)
_ANSWER = re.compile(r"(?im)(?:final\s+answer|answer)\s*(?:is\b\s*:?|:|=)\s*\**\s*(.+?)\s*$")
_MINERVA_TAIL = re.compile(r"(?i)\.?\s*I hope it is correct\.?$")
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{…} / \\fbox{…}, braces matched by counting (Hendrycks)."""
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
    """The string form two answers are compared in when math-verify cannot decide.

    Strips, lowercases, drops `$`, unwraps \\boxed{}, removes thousands separators and a trailing
    `.0`, so "$1,000.0$" and "\\boxed{1000}" compare equal.
    """
    text = answer.strip()
    text = last_boxed(text) or text
    text = text.replace("$", "").strip().lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.0+$", "", text)
    return text.removesuffix(".").strip()
