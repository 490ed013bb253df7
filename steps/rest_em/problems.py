"""Problems with an automatic binary check: load them from a file or generate arithmetic ones.

A problem has a kind, and the kind's verifier (`verifiers.registry`) says which reference it
needs: a math problem carries an `answer` (a final answer, or a GSM8K-style solution ending in
`#### N`), a code problem carries `tests` (Python asserts, or stdin/stdout pairs). A file row may
name its `kind`; without one, `answer` means math and `tests` means code.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from steps.errors import UserError
from steps.rest_em.verifiers.registry import verifier_for
from steps.rows import stable_id

GENERATED_PREFIX = "generate:"


@dataclass(frozen=True)
class Problem:
    """One problem; `kind` names its verifier, which checks against `answer` or `tests`."""

    id: str
    question: str
    kind: str
    answer: str | None = None
    tests: str | list[dict[str, str]] | None = field(default=None, hash=False)
    source: str = ""

    @property
    def reference(self) -> str | list[dict[str, str]] | None:
        """What the verifier checks against: the answer, else the tests."""
        return self.answer if self.answer is not None else self.tests


_GENERATED = re.compile(r"arithmetic(?::(?P<low>\d)-(?P<high>\d))?")


def load_problems(spec: str, *, count: int = 200, seed: int = 0) -> list[Problem]:
    """Problems from `generate:arithmetic[:MIN-MAX]` or a .jsonl/.parquet file.

    Args:
        spec: `generate:arithmetic` (1-2 step word problems), `generate:arithmetic:2-4` (2 to 4
            steps; any range within 1-6), or the path of a .jsonl/.parquet problems file.
        count: problems to generate (generated specs only).
        seed: the generator's seed (generated specs only).

    Raises:
        UserError: an unknown generated task, a missing or unreadable file, or a bad row (the
            message names the file and row).
    """
    if spec.startswith(GENERATED_PREFIX):
        match = _GENERATED.fullmatch(spec.removeprefix(GENERATED_PREFIX))
        low, high = (int(match["low"]), int(match["high"])) if match and match["low"] else (1, 2)
        if match is None or not 1 <= low <= high <= 6:
            raise UserError(f"--problems {spec!r}: the generated task is generate:arithmetic, or "
                            "generate:arithmetic:MIN-MAX for MIN to MAX steps (1 <= MIN <= MAX <= 6)")
        return arithmetic_problems(count, seed, steps=(low, high))
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--problems {spec}: file not found (or use generate:arithmetic)")
    if path.suffix == ".jsonl":
        records = _read_jsonl(path)
    elif path.suffix == ".parquet":
        records = pq.read_table(path).to_pylist()
    else:
        raise UserError(f"--problems {spec}: use a .jsonl or .parquet file")
    if not records:
        raise UserError(f"--problems {spec}: the file holds no problems")
    return [_problem_from_record(record, path, number) for number, record in
            enumerate(records, start=1)]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number}: expected a JSON object")
        records.append(record)
    return records


def _problem_from_record(record: dict[str, Any], path: Path, number: int) -> Problem:
    where = f"{path} row {number}"
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{where}: needs a non-empty string 'question'")
    answer, tests = record.get("answer"), record.get("tests")
    if (answer is None) == (tests is None):
        raise UserError(f"{where}: give exactly one of 'answer' (math) or 'tests' (code)")
    kind = str(record.get("kind") or ("math" if answer is not None else "code"))
    verifier = verifier_for(kind, where)
    value = {"answer": answer, "tests": tests}[verifier.reference_field]
    if value is None:
        raise UserError(f"{where}: kind {kind!r} needs '{verifier.reference_field}'")
    try:
        reference = verifier.read_reference(value)
    except ValueError as error:
        raise UserError(f"{where}: {error}") from None
    problem_id = str(record.get("id") or stable_id(question, answer, tests))
    return Problem(problem_id, question, kind, source=path.name,
                   **{verifier.reference_field: reference})


_NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
_THINGS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells"]


def arithmetic_problems(count: int, seed: int, steps: tuple[int, int] = (1, 2)) -> list[Problem]:
    """Word problems with exact integer answers, `steps[0]` to `steps[1]` operations each.

    Deterministic from `seed`. Small numbers keep them within reach of a 135M-parameter model, so
    that sampling solves some and self-training has data to learn from. The default (1, 2) gives
    the one- and two-step addition/subtraction problems earlier runs used; other ranges mix
    gains, losses and packs ("buys 3 packs of 4"), one operation per sentence.
    """
    rng = random.Random(seed)
    problems = []
    for index in range(count):
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        if steps == (1, 2):
            text, answer = _one_or_two_steps(rng, index, name, thing)
        else:
            text, answer = _several_steps(rng, rng.randint(*steps), name, thing)
        question = f"{text} How many {thing} does {name} have now?"
        problems.append(Problem(stable_id("arithmetic", seed, index, *([] if steps == (1, 2) else steps)),
                                question, "math", answer=str(answer),
                                source=f"generate:arithmetic seed={seed}"))
    return problems


def _one_or_two_steps(rng: random.Random, index: int, name: str, thing: str) -> tuple[str, int]:
    start, first = rng.randint(2, 20), rng.randint(1, 10)
    if index % 2 == 0:  # one step
        if rng.random() < 0.5:
            return f"{name} has {start} {thing}. {name} gets {first} more {thing}.", start + first
        start += first
        return f"{name} has {start} {thing}. {name} gives away {first} {thing}.", start - first
    second = rng.randint(1, start + first)  # two steps: gain, then lose at most what is there
    return (f"{name} has {start} {thing}. {name} gets {first} more {thing}, then gives away "
            f"{second} {thing}."), start + first - second


def _several_steps(rng: random.Random, count: int, name: str, thing: str) -> tuple[str, int]:
    amount = rng.randint(2, 20)
    sentences = [f"{name} has {amount} {thing}."]
    for step in range(count):
        then = "Then " if step else ""
        operation = rng.choice(("gain", "lose", "packs"))
        if operation == "lose" and amount >= 2:
            lost = rng.randint(1, amount - 1)
            sentences.append(f"{then}{name} gives away {lost} {thing}.")
            amount -= lost
        elif operation == "packs":
            packs, size = rng.randint(2, 4), rng.randint(2, 5)
            sentences.append(f"{then}{name} buys {packs} packs of {size} {thing}.")
            amount += packs * size
        else:
            gained = rng.randint(1, 10)
            sentences.append(f"{then}{name} gets {gained} more {thing}.")
            amount += gained
    return " ".join(sentences), amount


def split_heldout(problems: list[Problem], fraction: float) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out): the held-out share is exact, chosen by a hash of each problem's id, so
    a rerun (in any order) splits the same way."""
    if not 0 < fraction < 1:
        raise UserError(f"--heldout-fraction {fraction}: use a number between 0 and 1")
    size = round(fraction * len(problems))
    if not 0 < size < len(problems):
        raise UserError(f"--heldout-fraction {fraction}: leaves an empty split for "
                        f"{len(problems)} problems; use more problems")
    held = {p.id for p in sorted(problems, key=lambda p: stable_id("heldout", p.id))[:size]}
    return [p for p in problems if p.id not in held], [p for p in problems if p.id in held]
