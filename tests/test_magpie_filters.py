"""Magpie filter presets (polars) and the rows/failures conversion: every removal counted."""

from collections import Counter

import pyarrow as pa
import pytest

from steps.errors import UserError
from steps.llm_step import failure_record
from steps.magpie.filters import apply_preset
from steps.magpie.rows import MAGPIE_SCHEMA, Provenance, conversation_rows
from steps.rows import FAILURE_SCHEMA, FUNNEL_SCHEMA, to_table

QUALITY = ["very poor", "poor", "average", "good", "excellent", None]
DIFFICULTY = ["very easy", "easy", "medium", "hard", "very hard"]


def table(n: int = 30, reward: bool = False, clusters: bool = False) -> pa.Table:
    rows = [{
        "id": f"r{i}",
        "messages": [{"role": "user", "content": f"question {i}" + (":" if i % 7 == 0 else "?")},
                     {"role": "assistant", "content": "x" * (i * 37 % 101)}],
        "input_quality": QUALITY[i % 6],
        "difficulty": DIFFICULTY[i % 5],
        "reward": (i % 11) * 2.0 - 14.0 if reward else None,
        "flow": "magpie",
    } for i in range(n)]
    result = to_table(rows, MAGPIE_SCHEMA)
    if clusters:  # rows 0..9 form clusters of two, the lower id being kept
        keep = [f"r{i - i % 2}" if i < 10 else None for i in range(n)]
        result = result.append_column("min_similar_id", pa.array(keep, pa.string()))
    return result


def funnel_counts(funnel: pa.Table) -> dict[str, int]:
    return {row["reason"]: row["rows"] for row in funnel.to_pylist()}


@pytest.mark.parametrize("preset", ["air-300k-filtered", "pro-300k-filtered", "later"])
@pytest.mark.parametrize("extras", [False, True])
def test_every_removal_is_counted(preset: str, extras: bool) -> None:
    data = table(reward=extras, clusters=extras)
    result = apply_preset(data, preset, keep_longest=5)
    counts = funnel_counts(result.funnel)
    assert result.funnel.schema == FUNNEL_SCHEMA
    removed = sum(r["rows"] for r in result.funnel.to_pylist() if r["stage"].startswith("magpie"))
    assert counts["rows_in"] - removed == counts["rows_out"] == result.table.num_rows
    assert result.table.schema == data.schema
    assert counts["no_input_quality"] == 5  # untagged rows, counted apart from low quality


def test_thresholds() -> None:
    result = apply_preset(table(reward=True), "pro-300k-filtered", keep_longest=0)
    kept = result.table.to_pylist()
    assert all(r["input_quality"] in ("average", "good", "excellent") for r in kept)
    assert all(r["reward"] > -12 for r in kept)
    expected = [r for r in table(reward=True).to_pylist()
                if r["input_quality"] in ("average", "good", "excellent") and r["reward"] > -12]
    assert [r["id"] for r in kept] == [r["id"] for r in expected]
    air = apply_preset(table(), "air-300k-filtered", keep_longest=0).table.to_pylist()
    assert all(r["difficulty"] in ("medium", "hard", "very hard") for r in air)


def test_later_preset_drops_colons_and_cluster_duplicates() -> None:
    kept = apply_preset(table(clusters=True), "later", keep_longest=0)
    ids = [r["id"] for r in kept.table.to_pylist()]
    assert all(not r["messages"][0]["content"].endswith(":") for r in kept.table.to_pylist())
    assert not {f"r{i}" for i in range(1, 10, 2)} & set(ids)  # the higher id of each cluster
    assert funnel_counts(kept.funnel)["instruction_ends_with_colon"] > 0


def test_missing_inputs_are_not_applied_and_said_so() -> None:
    result = apply_preset(table(), "pro-300k-filtered")
    assert any("no reward model" in line for line in result.not_applied)
    assert any("embedding dedup" in line for line in result.not_applied)
    assert [r["rows"] for r in result.funnel.to_pylist()
            if r["reason"].startswith("not_applied:")] == [0, 0]
    assert result.table.column("reward").null_count == result.table.num_rows  # none invented


def test_longest_keeps_longest_responses_in_order() -> None:
    data = table()
    result = apply_preset(data, "later", keep_longest=3)
    survivors = apply_preset(data, "later", keep_longest=0).table.to_pylist()
    lengths = sorted((len(r["messages"][1]["content"]) for r in survivors), reverse=True)
    kept = result.table.to_pylist()
    assert sorted((len(r["messages"][1]["content"]) for r in kept), reverse=True) == lengths[:3]
    assert [r["id"] for r in kept] == [r["id"] for r in survivors if r in kept]
    assert funnel_counts(result.funnel)["not_in_longest_3"] == len(survivors) - 3


def test_unknown_preset() -> None:
    with pytest.raises(UserError, match="--filter"):
        apply_preset(table(), "nope")


def test_conversation_rows_count_failures_by_stage_and_reason() -> None:
    base = {"domain": "math", "failures": [], "failed": False}
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    records = [
        {**base, "conversation_id": 2, "messages": chat, "task_category": "Math",
         "input_quality": "good", "difficulty": "easy",
         "tokens": {"input": 5, "output": 2}, "calls": {"response_1/response": [1, 0, 0]},
         "engine_retries": {"response_1/response": 2}},
        {**base, "conversation_id": 0, "messages": [], "failed": True, "failures": [
            failure_record("instruction_1", "instruction", "empty_instruction", " \n")]},
        {**base, "conversation_id": 1, "messages": None, "failed": None},  # a step raised
        {**base, "conversation_id": 3, "messages": chat, "failures": [
            failure_record("tagging", "judge", "judge_unparsable", "{oops"),
            failure_record("reward", "reward_model", "reward_error", message="HTTPError: 500")]},
    ]
    made = conversation_rows(records, Provenance("run", "m", "t", {"seed": 1}))
    assert made.rows.schema == MAGPIE_SCHEMA and made.failures.schema == FAILURE_SCHEMA
    assert made.rows.num_rows == 2
    assert made.rows.column("subcategory").to_pylist() == ["math", "math"]
    assert made.rows.column("task_category").to_pylist() == ["Math", None]
    assert funnel_counts(made.funnel) == {"instruction_1:empty_instruction": 1,
                                          "unknown:upstream_step_error": 1}
    assert made.tokens == {"input": 5, "output": 2}
    assert made.calls == {"response_1/response": {"requests": 1, "retries": 0, "failures": 0,
                                                  "engine_retries": 2}}
    stages = Counter((f["stage"], f["reason"]) for f in made.failures.to_pylist())
    assert stages[("tagging", "judge_unparsable")] == stages[("reward", "reward_error")] == 1
    assert "HTTPError: 500" in made.failures.column("message").to_pylist()
    again = conversation_rows(records, Provenance("run2", "m", "t", {"seed": 1}))
    assert again.rows.column("id") == made.rows.column("id")  # ids from provenance, not run
