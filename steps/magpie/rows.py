"""Magpie conversations as dataset rows: ROW_SCHEMA plus tag columns, failures counted by reason.

Every conversation the generator started ends up either as a row or as a failure (stage and
reason); tagging and reward failures keep their row (tags null) and are listed as failures too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

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
    run_id: str
    instruction_model: str
    response_model: str | None  # None: instructions only
    generation_params: dict[str, Any]  # engines, template, sampling, seed: no secrets


@dataclass(frozen=True)
class MagpieRows:
    rows: pa.Table  # MAGPIE_SCHEMA
    failures: pa.Table  # FAILURE_SCHEMA
    funnel: pa.Table  # FUNNEL_SCHEMA, stage "generation": conversations that never became rows
    generation_params: dict[str, Any]


def conversation_rows(records: list[dict[str, Any]], provenance: Provenance) -> MagpieRows:
    params = json.dumps(provenance.generation_params, sort_keys=True)
    rows, failures, lost = [], [], Counter()
    for record in sorted(records, key=lambda r: r["conversation_id"]):
        row_id = stable_id(FLOW, params, record["conversation_id"])
        problems = []  # (stage, reason, raw output)
        if record.get("failure") is not None or record.get("messages") is None:
            stage = record.get("failure_stage") or "unknown (a step raised, see the log)"
            reason = record.get("failure") or "step_error"
            problems.append((stage, reason, record.get("failure_raw")))
            lost[f"{stage}:{reason}"] += 1
        else:  # a row; its tags or reward may still have failed
            if record.get("tagging_error"):
                problems.append(("tagging", record["tagging_error"], record.get("tagging_raw")))
            if record.get("reward_error"):
                problems.append(("reward", "reward_error", record["reward_error"]))
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
        failures += [{"run_id": provenance.run_id, "flow": FLOW, "stage": stage, "reason": reason,
                      "raw_output": raw, "item_id": row_id} for stage, reason, raw in problems]
    funnel = [{"config": CONFIG, "stage": "generation", "reason": reason, "rows": count}
              for reason, count in sorted(lost.items())]
    return MagpieRows(to_table(rows, MAGPIE_SCHEMA), to_table(failures, FAILURE_SCHEMA),
                      to_table(funnel, FUNNEL_SCHEMA), provenance.generation_params)
