"""Problems with an automatic binary check: load them from a file or generate arithmetic ones.

A math problem carries a reference `answer`; a code problem carries `tests`, either Python source
with asserts that run after the candidate, or a list of {"input", "output"} stdin/stdout pairs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from steps.errors import UserError
from steps.rows import stable_id

GENERATED_PREFIX = "generate:"


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    kind: Literal["math", "code"]
    answer: str | None = None
    tests: str | list[dict[str, str]] | None = field(default=None, hash=False)
    source: str = ""


def load_problems(spec: str, *, count: int = 200, seed: int = 0) -> list[Problem]:
    """Problems from `generate:arithmetic` or a .jsonl/.parquet file (one bad row: UserError)."""
    if spec.startswith(GENERATED_PREFIX):
        name = spec.removeprefix(GENERATED_PREFIX)
        if name != "arithmetic":
            raise UserError(f"--problems {spec!r}: the only generated task is generate:arithmetic")
        return arithmetic_problems(count, seed)
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
    if tests is not None and not _valid_tests(tests):
        raise UserError(f"{where}: 'tests' must be Python assert source or a list of "
                        "{\"input\": …, \"output\": …} objects")
    problem_id = str(record.get("id") or stable_id(question, answer, tests))
    if answer is not None:
        return Problem(problem_id, question, "math", answer=str(answer), source=path.name)
    return Problem(problem_id, question, "code", tests=tests, source=path.name)


def _valid_tests(tests: Any) -> bool:
    if isinstance(tests, str):
        return bool(tests.strip())
    return isinstance(tests, list) and bool(tests) and all(
        isinstance(case, dict) and isinstance(case.get("input"), str)
        and isinstance(case.get("output"), str) for case in tests)


_NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
_THINGS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells"]


def arithmetic_problems(count: int, seed: int) -> list[Problem]:
    """One- and two-step addition/subtraction word problems with exact integer answers.

    Deterministic from `seed`. Small numbers and at most two steps keep them within reach of a
    135M-parameter model, so that sampling solves some and self-training has data to learn from.
    """
    rng = random.Random(seed)
    problems = []
    for index in range(count):
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        start, first = rng.randint(2, 20), rng.randint(1, 10)
        if index % 2 == 0:  # one step
            if rng.random() < 0.5:
                text = f"{name} has {start} {thing}. {name} gets {first} more {thing}."
                answer = start + first
            else:
                start += first
                text = f"{name} has {start} {thing}. {name} gives away {first} {thing}."
                answer = start - first
        else:  # two steps: gain, then lose at most what is there
            second = rng.randint(1, start + first)
            text = (f"{name} has {start} {thing}. {name} gets {first} more {thing}, "
                    f"then gives away {second} {thing}.")
            answer = start + first - second
        question = f"{text} How many {thing} does {name} have now?"
        problems.append(Problem(stable_id("arithmetic", seed, index), question, "math",
                                answer=str(answer), source=f"generate:arithmetic seed={seed}"))
    return problems


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
