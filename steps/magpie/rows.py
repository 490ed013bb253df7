"""Magpie conversations as dataset rows: ROW_SCHEMA plus tag columns, failures counted by reason.

Every conversation the generator started ends up either as a row or as a failure (stage and
reason); tagging and reward failures keep their row (tags null) and are listed as failures too.
Failures come as the records of `steps.llm_step` (the `failures` column of every conversation).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from steps.llm_step import UPSTREAM_ERROR, failure_record, row_failed
from steps.magpie.tagging import TAG_COLUMNS
from steps.rows import FAILURE_SCHEMA, FUNNEL_SCHEMA, ROW_SCHEMA, stable_id, to_table

FLOW = CONFIG = "magpie"

# Columns the magpie config adds to ROW_SCHEMA (the filter presets read them).
TAG_FIELDS = [
    *(pa.field(name, pa.string()) for name in TAG_COLUMNS),  # Magpie's judge tags
    pa.field("language", pa.string()),  # ISO 639-1 of the first instruction (lingua)
    pa.field("reward", pa.float64()),  # reward model score; null without a reward model
]
MAGPIE_SCHEMA = pa.schema([*ROW_SCHEMA, *TAG_FIELDS])


@dataclass(frozen=True)
class Provenance:
    """Where a run's rows come from: run id, models and generation settings (no secrets)."""

    run_id: str
    instruction_model: str
    response_model: str | None  # None: instructions only
    generation_params: dict[str, Any]  # engines, template, sampling, seed: no secrets


@dataclass(frozen=True)
class MagpieRows:
    """A Magpie run's rows, failures and funnel, with its token and call counts."""

    rows: pa.Table  # MAGPIE_SCHEMA
    failures: pa.Table  # FAILURE_SCHEMA
    funnel: pa.Table  # FUNNEL_SCHEMA, stage "generation": conversations that never became rows
    generation_params: dict[str, Any]
    tokens: dict[str, int]  # {"input", "output"} over every LLM call of the run
    calls: dict[str, dict[str, int]]  # "stage/agent": requests, retries, failures, engine_retries
    not_done: int = 0  # conversations a cap left unmade (none started: neither rows nor failures)


def conversation_rows(records: list[dict[str, Any]], provenance: Provenance) -> MagpieRows:
    """Rows from the pipeline's conversation records: finished ones as rows, the rest as counted failures."""
    params = json.dumps(provenance.generation_params, sort_keys=True)
    rows, failures, lost = [], [], Counter()
    tokens: Counter[str] = Counter({"input": 0, "output": 0})
    calls: dict[str, Counter[str]] = {}
    for record in sorted(records, key=lambda r: r["conversation_id"]):
        row_id = stable_id(FLOW, params, record["conversation_id"])
        problems = list(record.get("failures") or [])
        tokens.update(record.get("tokens") or {})
        for label, (requests, retries, failed) in (record.get("calls") or {}).items():
            calls.setdefault(label, Counter()).update(
                {"requests": requests, "retries": retries, "failures": failed})
        for label, retries in (record.get("engine_retries") or {}).items():
            calls.setdefault(label, Counter())["engine_retries"] += retries
        if row_failed(record) or record.get("messages") is None:
            if not problems:  # distilabel dropped the batch's outputs without a record
                problems.append(failure_record("unknown", None, UPSTREAM_ERROR))
            lost[f"{problems[-1]['stage']}:{problems[-1]['reason']}"] += 1
        else:  # a row; its tags or reward may still have failed
            rows.append({
                **{name: record.get(name) for name in [*TAG_COLUMNS, "language", "reward"]},
                "id": row_id,
                "messages": record["messages"],
                "flow": FLOW,
                "config": CONFIG,
                "subcategory": record["domain"],
                "agent_model": provenance.instruction_model,
                "teacher_model": provenance.response_model,
                "generation_params": params,
                "run_id": provenance.run_id,
            })
        failures += [{**problem, "run_id": provenance.run_id, "flow": FLOW, "item_id": row_id}
                     for problem in problems]
    funnel = [{"config": CONFIG, "stage": "generation", "reason": reason, "rows": count}
              for reason, count in sorted(lost.items())]
    return MagpieRows(to_table(rows, MAGPIE_SCHEMA), to_table(failures, FAILURE_SCHEMA),
                      to_table(funnel, FUNNEL_SCHEMA), provenance.generation_params,
                      dict(tokens), {label: dict(counts) for label, counts in sorted(calls.items())})
