"""The row format every flow writes, and stable ids derived from provenance.

A row is what TRL's SFTTrainer reads (`messages`, a list of {role, content}) plus provenance that
says exactly how it was made. Flows fill the columns that apply to them and leave the rest null;
the schema is shared so that configs of one repository concatenate and load with `datasets`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # stable hash of provenance: the same row from a rerun has the same id
        ("messages", pa.list_(MESSAGE)),
        ("flow", pa.string()),  # agentinstruct | magpie | rest_em
        ("skill", pa.string()),  # taxonomy skill id, e.g. reading_comprehension
        ("config", pa.string()),  # dataset config (orca-agentinstruct-1M split name for skills)
        ("subcategory", pa.string()),  # instruction agent / task type
        ("seed_id", pa.string()),
        ("seed_source", pa.string()),
        ("transformation_agent", pa.string()),
        ("refinement_round", pa.int32()),
        ("refinement_goal", pa.string()),
        ("reference_answer", pa.string()),  # an agent's own answer when it wrote one (MCQ key)
        ("agent_model", pa.string()),
        ("teacher_model", pa.string()),
        ("generation_params", pa.string()),  # JSON: engines and sampling settings
        ("run_id", pa.string()),
    ]
)

FAILURE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("flow", pa.string()),
        ("skill", pa.string()),
        ("seed_id", pa.string()),
        ("stage", pa.string()),  # the step that failed
        ("agent", pa.string()),
        ("reason", pa.string()),  # short machine-readable reason, counted on the card
        ("raw_output", pa.string()),
        ("message", pa.string()),  # the engine's or step's words (scrubbed), e.g. an HTTP error
        ("item_id", pa.string()),
    ]
)


def stable_id(*parts: Any) -> str:
    """A short hex id that depends only on `parts` (JSON-encoded), never on process or order."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def to_table(rows: list[dict[str, Any]], schema: pa.Schema = ROW_SCHEMA) -> pa.Table:
    """Rows (missing keys become null) as an Arrow table with exactly `schema`'s columns."""
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows],
                                schema=schema)

# The curation funnel, one row per (config, stage, reason). Conventions: stage "generation" holds
# items that failed before becoming rows (reason = failure reason); stage "input"/reason "rows_in"
# and stage "output"/reason "rows_out" bracket the curation stages, whose rows are removals, so
# that rows_in - sum(removals) == rows_out for every config.
FUNNEL_SCHEMA = pa.schema(
    [("config", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("rows", pa.int64())]
)
