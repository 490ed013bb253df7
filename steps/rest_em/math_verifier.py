"""Is a final answer equal to the reference? math-verify, gold first, in a worker process.

math-verify's own time limits use `signal.alarm`, which only works on a process's main thread;
distilabel runs steps in threads and pools. So every check runs on the main thread of one
spawned worker process (where math-verify's limits work), and the caller also waits at most
`hard_timeout` seconds: a check stuck where no signal reaches it (sympy in C code) is ended by
killing and restarting the worker. A normalised-string comparison decides when math-verify
cannot parse the answers and catches what it misses.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Literal

from steps.rest_em.answers import normalise_answer

Verdict = Literal["pass", "fail", "timeout", "error"]


_PLAIN_NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?")


def _readings(text: str) -> list[str]:
    """How math-verify should read an answer: plain text, and as LaTeX in $…$ ('x<2', '\\frac12').

    A plain number is read as is ('1,000' in $…$ would be a tuple); other answers are tried both
    ways, so 'x<2' is found as an inequality and '12 apples' still yields 12.
    """
    text = text.strip()
    if _PLAIN_NUMBER.fullmatch(text) or "$" in text or "\\boxed" in text:
        return [text]
    return [f"${text}$", text]


def math_verify_check(gold: str, answer: str, time_limit: int) -> Verdict:
    """One comparison with math-verify (gold first: it is not symmetric), plus the string check."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    if normalise_answer(gold) == normalise_answer(answer):
        return "pass"
    try:
        gold_parsed = parse(_readings(gold)[0], parsing_timeout=time_limit, raise_on_error=True)
        if not gold_parsed:
            return "fail"  # gold math-verify cannot read: the string check above decided
        for reading in _readings(answer):
            parsed = parse(reading, parsing_timeout=time_limit, raise_on_error=True)
            if parsed and verify(gold_parsed, parsed, timeout_seconds=time_limit,
                                 raise_on_error=True):
                return "pass"
    except TimeoutException:
        return "timeout"
    except Exception:  # noqa: BLE001 - any parser/sympy failure is an "error" verdict, counted
        return "error"
    return "fail"


Check = Callable[[str, str, int], Verdict]


def _serve(connection: Connection, check: Check, time_limit: int) -> None:
    """Worker loop: warm up (imports sympy), say so, then answer pairs until the pipe closes."""
    check("1/2", "0.5", time_limit)
    connection.send("ready")
    while True:
        try:
            gold, answer = connection.recv()
        except EOFError:
            return
        connection.send(check(gold, answer, time_limit))


class MathVerifier:
    """Verdicts for (gold, answer) pairs; never raises for a bad answer, never hangs.

    `check` is the function the worker runs (a module-level function, so it can be pickled);
    `time_limit` is math-verify's own per-operation limit, `hard_timeout` the caller's limit.
    The worker is spawned, so a script using this needs the usual `if __name__ == "__main__"`.
    """

    STARTUP_TIMEOUT = 300.0  # spawning and importing sympy, on a busy machine

    def __init__(self, *, time_limit: int = 5, hard_timeout: float = 15.0,
                 check: Check = math_verify_check) -> None:
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
        if self._worker is not None:
            self._worker.kill()
            self._worker.join()
        if self._connection is not None:
            self._connection.close()
        self._worker, self._connection = None, None

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
