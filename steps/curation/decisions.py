"""What curation decided for every input row, and the removed-rows table built from it.

Rows are numbered across configs in input order; the arrays below are indexed by that number and
hold numbers only, never documents, so a run over 10M rows keeps a few hundred MB at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from steps.curation.sources import ConfigInput


@dataclass
class Decisions:
    """What curation decided for every input row (rows numbered across configs, in input order)."""

    inputs: list[ConfigInput]
    reasons: list[tuple[str, str]]  # (stage, reason) per reason code
    config_of_row: np.ndarray  # int16, index into inputs
    local_row: np.ndarray  # int64, position within its config
    reason: np.ndarray  # int16 reason code, -1 = kept
    duplicate_of: np.ndarray  # int64 global row, -1
    benchmark_item: np.ndarray  # int64 item index within its benchmark, -1
    similarity: np.ndarray  # float32: Jaccard, item coverage or cosine behind a removal
    text_keys: np.ndarray
    words: np.ndarray
    turns: np.ndarray
    ids: pa.ChunkedArray | None
    skills: pl.Series
    decontamination: dict[str, Any] = field(default_factory=dict)
    near_dup_pairs: dict[str, int] = field(default_factory=dict)

    def code(self, stage: str, reason: str) -> int:
        """The code of a (stage, reason) in `reason` arrays."""
        return self.reasons.index((stage, reason))

    def row_ids(self, rows: np.ndarray) -> list[str]:
        """The `id` of each row (read back when not held), or `<config>:<position>` without ids."""
        if self.ids is not None:
            return self.ids.take(pa.array(rows)).to_pylist()
        ids = np.array([f"{self.inputs[c].config}:{p}" for c, p in
                        zip(self.config_of_row[rows], self.local_row[rows], strict=True)],
                       dtype=object)
        for c, source in enumerate(self.inputs):
            mine = np.flatnonzero(self.config_of_row[rows] == c)
            if len(mine) and "id" in source.schema():
                positions = self.local_row[rows[mine]]
                wanted = np.unique(positions)
                found = source.rows(wanted, ["id"]).get_column("id").to_numpy()
                ids[mine] = found[np.searchsorted(wanted, positions)]
        return ids.tolist()


def removed_table(decisions: Decisions) -> pa.Table:
    """One row per removed input row: where it was, why, and what it duplicates or leaks."""
    rows = np.flatnonzero(decisions.reason >= 0)
    stage_reason = [decisions.reasons[r] for r in decisions.reason[rows]]
    dup = decisions.duplicate_of[rows]
    dup_ids = decisions.row_ids(np.where(dup >= 0, dup, 0)) if len(rows) else []
    names = [i.config for i in decisions.inputs]
    item = decisions.benchmark_item[rows]
    return pa.table({
        "config": [names[c] for c in decisions.config_of_row[rows]],
        "row": decisions.local_row[rows],
        "id": decisions.row_ids(rows),
        "stage": [s for s, _ in stage_reason],
        "reason": [r for _, r in stage_reason],
        "duplicate_of": [d if k >= 0 else None for d, k in zip(dup_ids, dup, strict=True)],
        "benchmark": [r.removeprefix("benchmark:") if s == "decontamination" else None
                      for s, r in stage_reason],
        "benchmark_item": pa.array(np.where(item >= 0, item, 0), mask=item < 0),
        "similarity": decisions.similarity[rows],
    })
