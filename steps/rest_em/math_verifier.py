"""Is a final answer equal to the reference? Exact numbers first, then math-verify, gold first.

The order of the checks (each one decides when it can):
1. Both answers are one plain number (`answers.read_number`: thousands separators in groups of
   three, currency, percent, fractions, unit words): compared exactly, as fractions.
2. Equal after `normalise_answer`: pass (answers math-verify cannot read, such as "12:00").
3. math-verify 0.9 (gold first: it is not symmetric, as math-verify's README says) on the LaTeX reading
   of each answer. When both sides evaluate to rational numbers they are compared exactly, not
   with math-verify's float tolerance (1/2^99 is not 1/2^98). An answer it reads only in part
   (the number in front of more digits) or as no finite value ("12:00" is 12/0) is a fail.

A wrong or unreadable answer is a `fail`; `timeout` is math-verify's own limit (or the caller's
hard limit); `error` only means the check itself broke. ReST-EM trains on what passes, so every
doubt resolves to fail.

math-verify's time limits use `signal.alarm`, which only works on a process's main thread;
distilabel runs steps in threads and pools. So every check runs on the main thread of one
spawned worker process (where math-verify's limits work), and the caller also waits at most
`hard_timeout` seconds: a check stuck where no signal reaches it (sympy in C code) is ended by
killing and restarting the worker.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from steps.rest_em.answers import normalise_answer, read_number
from steps.rest_em.verifiers.base import Verdict

_PERCENT = re.compile(r"\\?%\s*\$?\s*$")
_CURRENCY_PREFIX = re.compile(r"^(?:\\\$|\$)\s*")


class _Unreadable(Exception):
    """math-verify found no complete, finite value in an answer."""


def _latex_value(text: str, time_limit: int) -> tuple[Any, bool]:
    """(sympy value, written as a percent) of an answer read as LaTeX by math-verify.

    Raises:
        _Unreadable: no value, a non-finite one, or one read from part of the text only.
        TimeoutException: math-verify's time limit.
    """
    from math_verify import LatexExtractionConfig, parse
    from math_verify.errors import TimeoutException
    from sympy import Basic, nan, zoo

    percent = bool(_PERCENT.search(text))
    text = text.strip()
    while len(text) > 1 and text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    reading = f"${_CURRENCY_PREFIX.sub('', text)}$"
    try:
        parsed = parse(reading, extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=time_limit, raise_on_error=True)
    except TimeoutException:
        raise
    except Exception as error:  # noqa: BLE001 - whatever it cannot parse is not a value
        raise _Unreadable from error
    values = [item for item in parsed if isinstance(item, Basic)]
    if not values or values[0].has(zoo, nan):
        raise _Unreadable
    matched = next((item for item in parsed if isinstance(item, str)), "")
    if matched and matched in reading and re.search(r"\d", reading.replace(matched, "", 1)):
        raise _Unreadable  # "$2^{10}$" read as "2" would be a partial parse
    return values[0], percent


def _rationals(value: Any, percent: bool) -> set[Any] | None:
    """The exact rational readings of a sympy value (10% is 10 or 1/10), or None if irrational."""
    from sympy import Float, Rational

    if value.free_symbols or not value.is_number:
        return None
    exact = value.xreplace({f: Rational(str(f)) for f in value.atoms(Float)}).doit()
    if not exact.is_Rational:
        return None
    return {exact, exact / 100} if percent else {exact}


def math_verify_check(gold: str, answer: str, time_limit: int = 5) -> Verdict:
    """The verdict on `answer` against the reference `gold` (see the module's order of checks).

    Args:
        gold: the reference final answer (text or LaTeX).
        answer: the extracted final answer of a sample.
        time_limit: math-verify's limit per parse and per comparison, in seconds (it uses
            `signal.alarm`: call this on a main thread).
    """
    from math_verify import verify
    from math_verify.errors import TimeoutException

    gold_number, answer_number = read_number(gold), read_number(answer)
    if gold_number is not None and answer_number is not None:
        return "pass" if gold_number.readings() & answer_number.readings() else "fail"
    if normalise_answer(gold) == normalise_answer(answer):
        return "pass"
    try:
        gold_value, gold_percent = _latex_value(gold, time_limit)
        answer_value, answer_percent = _latex_value(answer, time_limit)
        gold_exact = _rationals(gold_value, gold_percent)
        answer_exact = _rationals(answer_value, answer_percent)
        if gold_exact is not None and answer_exact is not None:
            return "pass" if gold_exact & answer_exact else "fail"
        try:
            equal = verify(gold_value, answer_value, timeout_seconds=time_limit, raise_on_error=True)
        except TimeoutException:
            raise
        except Exception:  # noqa: BLE001 - sympy could not compare them: not shown equal
            return "fail"
        return "pass" if equal else "fail"
    except _Unreadable:
        return "fail"
    except TimeoutException:
        return "timeout"


Check = Callable[[str, str, int], Verdict]


def _serve(connection: Connection, check: Check, time_limit: int) -> None:
    """Worker loop: warm up (imports sympy), say so, then answer pairs until the pipe closes.

    An exception in `check` is a bug of the verifier, not a wrong answer: it is answered
    `error` (counted apart) and the worker goes on.
    """
    check("1/2", "\\frac{1}{2}", time_limit)
    connection.send("ready")
    while True:
        try:
            gold, answer = connection.recv()
        except EOFError:
            return
        try:
            verdict = check(gold, answer, time_limit)
        except Exception:  # noqa: BLE001 - see the docstring
            verdict = "error"
        connection.send(verdict)


class MathVerifyWorker:
    """Verdicts for (gold, answer) pairs; never raises for a bad answer, never hangs.

    `check` is the function the worker runs (a module-level function, so it can be pickled);
    `time_limit` is math-verify's own per-operation limit, `hard_timeout` the caller's limit.
    The worker is spawned, so a script using this needs the usual `if __name__ == "__main__"`.
    """

    STARTUP_TIMEOUT = 300.0  # spawning and importing sympy, on a busy machine

    def __init__(self, *, time_limit: int = 5, hard_timeout: float = 15.0,
                 check: Check = math_verify_check) -> None:
        """Set the limits (seconds); the worker starts on the first call."""
        self.time_limit, self.hard_timeout, self.check = time_limit, hard_timeout, check
        self._worker: multiprocessing.Process | None = None
        self._connection: Connection | None = None

    def _start(self) -> Connection:
        context = multiprocessing.get_context("spawn")  # no inherited threads or locks
        parent, child = context.Pipe()
        self._worker = context.Process(target=_serve, args=(child, self.check, self.time_limit),
                                       daemon=True)
        self._worker.start()
        child.close()
        self._connection = parent
        try:
            ready = parent.poll(self.STARTUP_TIMEOUT) and parent.recv() == "ready"
        except EOFError:  # it died while importing (e.g. math-verify is not installed)
            ready = False
        if not ready:
            self.close()
            raise RuntimeError("the math verifier worker did not start")
        return parent

    def __call__(self, gold: str, answer: str) -> Verdict:
        """The verdict on `answer` against `gold`.

        "error" when the worker dies (it restarts on the next call), "timeout" when it takes
        longer than `hard_timeout` seconds (it is killed).

        Raises:
            RuntimeError: the worker did not start within STARTUP_TIMEOUT seconds (e.g.
                math-verify is not installed).
        """
        connection = self._connection or self._start()
        try:
            connection.send((gold, answer))
            if connection.poll(self.hard_timeout):
                return connection.recv()
        except (EOFError, OSError):  # the worker died (e.g. out of memory): restart, count it
            self.close()
            return "error"
        self.close()  # still busy: kill it; the next call starts a fresh worker
        return "timeout"

    def close(self) -> None:
        """Kill the worker, if any; the next call starts a fresh one."""
        if self._worker is not None:
            self._worker.kill()
            self._worker.join()
        if self._connection is not None:
            self._connection.close()
        self._worker, self._connection = None, None

    def __enter__(self) -> MathVerifyWorker:
        """The worker itself; leaving the block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the worker (`close`)."""
        self.close()
