"""The one base of LLM steps: fan-out, seeds, retries, failure records and counts, on a scripted
engine (no model)."""

from collections.abc import Callable, Hashable
from typing import Any

import pytest
from distilabel.models.llms import LLM
from pydantic import PrivateAttr

from steps.llm_step import LLMStep, OutputError, Request, request_seed, rerun_may_fix
from steps.llms.base import Generation, Prompt, engine_error, engine_output

Answer = Callable[[Prompt, int], Generation]


class ScriptedLLM(LLM):
    """Answers each prompt with `answer(prompt, generation index)`; records every call."""

    _answer: Answer = PrivateAttr()
    calls: list[tuple[list[Prompt], dict[str, Any]]] = []

    def load(self) -> None:
        super().load()

    @property
    def model_name(self) -> str:
        return "scripted"

    def generate(self, inputs: list[Any], num_generations: int = 1,  # type: ignore[override]
                 temperature: float = 0.0, seed: int = 0) -> list[dict[str, Any]]:
        self.calls.append((inputs, {"temperature": temperature, "n": num_generations}))
        return [engine_output([self._answer(p, i) for i in range(num_generations)])
                for p in inputs]


def scripted(answer: Answer, **generation: Any) -> ScriptedLLM:
    llm = ScriptedLLM(generation_kwargs=generation)
    llm._answer = answer
    llm.calls = []
    return llm


class Asks(LLMStep):
    """One request per entry of `asks` (the reply must be a digit), or k samples of one."""

    stage = "asks"
    k: int = 1

    def requests(self, row: dict[str, Any]) -> list[Request]:
        if row.get("explode"):
            raise KeyError("explode")
        return [Request(key, "asker", f"say {key}", num_generations=self.k)
                for key in row["asks"]]

    def parse(self, text: str, request: Request) -> str:
        if not text.isdigit():
            raise OutputError("not_a_digit")
        return text

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row["answers"] = replies
        row["failed"] = not replies


def step(answer: Answer, **kwargs: Any) -> Asks:
    made = Asks(name="asks", llm=scripted(answer, temperature=0.0), **kwargs)
    made.load()
    return made


def digits(prompt: Prompt, index: int) -> Generation:
    return Generation(str(prompt.seed % 10), 3, 1)


def test_requests_fan_out_and_are_counted() -> None:
    asks = step(digits, seed=7)
    (row,) = next(asks.process([{"item_id": "a", "asks": ["x", "y"]}]))
    assert set(row["answers"]) == {"x", "y"} and not row["failed"]
    assert row["calls"] == {"asks/asker": [2, 0, 0]}
    assert row["tokens"] == {"input": 6, "output": 2}
    assert row["failures"] == [] and row["engine_retries"] == {"asks/asker": 0}


def test_seeds_follow_row_stage_key_and_attempt_not_the_batch() -> None:
    asks = step(digits, seed=7)
    next(asks.process([{"item_id": "a", "asks": ["x"]}, {"item_id": "b", "asks": ["x"]}]))
    alone = step(digits, seed=7)
    next(alone.process([{"item_id": "b", "asks": ["x"]}]))
    seeds = [p.seed for p in asks.llm.calls[0][0]]
    assert seeds == [request_seed(7, "a", "asks", "x", 0), request_seed(7, "b", "asks", "x", 0)]
    assert alone.llm.calls[0][0][0].seed == seeds[1]  # same row, same seed, whatever the batch
    assert seeds[0] != seeds[1] != request_seed(7, "b", "asks", "x", 1)


def test_unparsable_reply_is_asked_again_hotter_then_recorded() -> None:
    asks = step(lambda p, i: Generation("nope"), max_retries=2, retry_temperature=0.9)
    (row,) = next(asks.process([{"item_id": "a", "asks": ["x"]}]))
    assert [kwargs["temperature"] for _, kwargs in asks.llm.calls] == [0.0, 0.9, 0.9]
    assert len({call[0][0].seed for call in asks.llm.calls}) == 3  # fresh sampling each time
    assert row["calls"] == {"asks/asker": [1, 2, 1]} and row["failed"]
    assert row["failures"] == [{"stage": "asks", "agent": "asker", "reason": "not_a_digit",
                                "raw_output": "nope", "message": None, "key": '"x"'}]


def test_a_retry_that_parses_is_kept() -> None:
    asks = step(lambda p, i: Generation("nope" if len(asks.llm.calls) == 1 else "4"))
    (row,) = next(asks.process([{"item_id": "a", "asks": ["x"]}]))
    assert row["answers"] == {"x": "4"} and row["failures"] == []
    assert row["calls"] == {"asks/asker": [1, 1, 0]}


def test_engine_errors_are_recorded_with_their_reason_not_asked_again() -> None:
    def answer(prompt: Prompt, index: int) -> Generation:
        if prompt.messages == "say bad":
            return Generation(retries=3, error=engine_error("engine_error:503", "overloaded"))
        return Generation("1")

    asks = step(answer)
    (row,) = next(asks.process([{"item_id": "a", "asks": ["bad", "good"]}]))
    assert len(asks.llm.calls) == 1
    assert row["answers"] == {"good": "1"} and not row["failed"]
    assert [(f["reason"], f["message"], f["raw_output"]) for f in row["failures"]] == [
        ("engine_error:503", "overloaded", None)]
    assert row["engine_retries"] == {"asks/asker": 3} and row["calls"] == {"asks/asker": [2, 0, 1]}


def test_an_engine_that_raises_loses_no_row() -> None:
    def boom(prompt: Prompt, index: int) -> Generation:
        raise RuntimeError("the engine process died")

    rows = next(step(boom).process([{"item_id": "a", "asks": ["x"]}, {"item_id": "b", "asks": []}]))
    assert len(rows) == 2
    assert rows[0]["failures"][0]["reason"] == "engine_error:exception"
    assert "the engine process died" in rows[0]["failures"][0]["message"]


def test_step_errors_and_upstream_failures_are_recorded_and_skipped() -> None:
    asks = step(digits)
    rows = next(asks.process([
        {"item_id": "a", "asks": ["x"], "explode": True},  # requests() raises
        {"item_id": "b", "asks": ["x"], "failed": True, "failures": [{"reason": "earlier"}]},
        {"item_id": "c", "asks": ["x"], "failed": None},  # distilabel dropped an upstream batch
        {"item_id": "d", "asks": ["x"]},
    ]))
    assert [len(call[0]) for call in asks.llm.calls] == [1]  # only row d was asked
    assert rows[0]["failed"] and rows[0]["failures"][0]["reason"] == "step_error"
    assert "explode" in rows[0]["failures"][0]["message"]
    assert rows[1]["failures"] == [{"reason": "earlier"}] and "answers" not in rows[1]
    assert rows[2]["failed"] and rows[2]["failures"][0]["reason"] == "upstream_step_error"
    assert rows[3]["answers"] == {"x": rows[3]["answers"]["x"]} and not rows[3]["failed"]


@pytest.mark.parametrize("failing_index", [1])
def test_k_samples_keep_their_holes(failing_index: int) -> None:
    def answer(prompt: Prompt, index: int) -> Generation:
        if index == failing_index:
            return Generation(error=engine_error("context_overflow", "too long"))
        return Generation("x" if index == 2 else str(index))

    asks = step(answer, k=3)
    (row,) = next(asks.process([{"item_id": "a", "asks": ["q"]}]))
    assert asks.llm.calls[0][1]["n"] == 3 and len(asks.llm.calls) == 1  # k samples: one request
    assert row["answers"] == {"q": ["0", None, None]}
    assert sorted(f["reason"] for f in row["failures"]) == ["context_overflow", "not_a_digit"]


@pytest.mark.parametrize(("reason", "may"), [
    ("engine_error:503", True), ("engine_error:429", True), ("engine_error:timeout", True),
    ("engine_error:connection", True), ("engine_error:unavailable", True),
    ("engine_error:exception", True), ("engine_error:400", False), ("context_overflow", False),
    ("invalid_json", False)])
def test_which_failures_a_rerun_may_fix(reason: str, may: bool) -> None:
    assert rerun_may_fix({"reason": reason}) is may
