"""Pull review answers back: decide every row, write the `reviewed` config and the counts.

Written into the repository folder:
- `data/reviewed/`: the kept rows of the pulled configs, ROW_SCHEMA exactly, with corrections
  applied to the last assistant reply; row ids stay the provenance ids of the originals.
- `review.parquet`: one line per row: its record, state, votes, mean rating, agreement.
- `review.json`: the counts the card shows (reviewed, kept, discarded, corrected, pending, mean
  agreement), in total and per config. Every row is counted: rows = reviewed + pending, and
  pending includes the rows not in Argilla at all (`not_in_argilla`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import argilla as rg
import pyarrow as pa
import pyarrow.parquet as pq

from steps.errors import UserError
from steps.repo_folder import REVIEW_FILE, REVIEWED, read_config, write_config, write_json
from steps.review import server
from steps.review.decisions import Answer, Decision, decide
from steps.review.push import queue_name
from steps.review.queue_settings import MESSAGES
from steps.review.records import record_id, with_correction
from steps.rows import to_table

REVIEW_TABLE = "review.parquet"
REVIEW_SCHEMA = pa.schema([
    ("config", pa.string()), ("row_id", pa.string()), ("record_id", pa.string()),
    ("state", pa.string()),  # not_in_argilla | pending | kept | discarded
    ("reviewers", pa.int32()), ("keep_votes", pa.int32()), ("discard_votes", pa.int32()),
    ("quality", pa.float64()), ("agreement", pa.float64()), ("corrected", pa.bool_()),
])
COUNTS = ("rows", "reviewed", "kept", "discarded", "corrected", "pending", "not_in_argilla",
          "orphaned_records")


@dataclass
class Review:
    """Everything pull writes, computed from the folder and the server."""

    kept_rows: list[dict[str, Any]] = field(default_factory=list)
    per_row: list[dict[str, Any]] = field(default_factory=list)  # REVIEW_SCHEMA rows
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # config -> counts
    queues: dict[str, str | None] = field(default_factory=dict)  # config -> dataset name

    def totals(self) -> dict[str, Any]:
        """The counts summed over configs, with the reviewers' agreement."""
        totals = {key: sum(c[key] for c in self.counts.values()) for key in COUNTS}
        return totals | _agreement(self.per_row)


def collect(client: rg.Argilla, ws: rg.Workspace, repo_dir: Path, config_names: list[str],
            prefix: str) -> Review:
    """Read the review queues of `config_names` back into a Review."""
    review = Review()
    for config in config_names:
        name = queue_name(prefix, config)
        dataset = server.find_dataset(ws, name)
        review.queues[config] = name if dataset else None
        decisions = _decisions(client, dataset) if dataset else {}
        _review_config(review, config, read_config(repo_dir, config).to_pylist(), decisions)
    if not any(review.queues.values()):
        raise UserError(f"no review queues named {prefix}-<config> in Argilla workspace "
                        f"{ws.name!r}; run `pipelines/review.py push` first (or check --name)")
    return review


def write(repo_dir: Path, review: Review, workspace: str) -> None:
    """Write the reviewed config, the per-row review table and review.json into `repo_dir`."""
    write_config(repo_dir, REVIEWED, to_table(review.kept_rows))
    tmp = repo_dir / f"{REVIEW_TABLE}.tmp"
    pq.write_table(pa.Table.from_pylist(review.per_row, schema=REVIEW_SCHEMA), tmp)
    os.replace(tmp, repo_dir / REVIEW_TABLE)
    write_json(repo_dir / REVIEW_FILE, review.totals() | {
        "workspace": workspace, "queues": review.queues, "configs": review.counts})


def _decisions(client: rg.Argilla, dataset: rg.Dataset) -> dict[str, Decision]:
    min_submitted = dataset.settings.distribution.min_submitted
    return {
        record.external_id: decide([Answer(str(response.status.value),
                                           {q: v["value"] for q, v in response.values.items()})
                                    for response in record.responses], min_submitted)
        for record in server.records(client, dataset, with_responses=True)
    }


def _review_config(review: Review, config: str, rows: list[dict[str, Any]],
                   decisions: dict[str, Decision]) -> None:
    counts = dict.fromkeys(COUNTS, 0)
    seen: set[str] = set()
    start = len(review.per_row)
    for row in rows:
        rid = record_id(row)
        seen.add(rid)
        state = decisions[rid].state if rid in decisions else "not_in_argilla"
        decision = decisions.get(rid) or decide([])  # not in Argilla: no answers, no votes
        corrected = decision.correction is not None  # only kept records carry one
        if state == "kept":
            messages = row[MESSAGES]
            review.kept_rows.append(row | {MESSAGES: with_correction(messages, decision.correction)
                                           if corrected else messages})
        counts["rows"] += 1
        counts[state] += 1
        counts["corrected"] += corrected
        review.per_row.append({
            "config": config, "row_id": row["id"], "record_id": rid, "state": state,
            "reviewers": decision.reviewers, "keep_votes": decision.keep_votes,
            "discard_votes": decision.discard_votes, "quality": decision.quality,
            "agreement": decision.agreement, "corrected": corrected})
    counts["reviewed"] = counts["kept"] + counts["discarded"]
    counts["pending"] += counts["not_in_argilla"]
    counts["orphaned_records"] = len(set(decisions) - seen)  # rows since changed or removed
    review.counts[config] = counts | _agreement(review.per_row[start:])


def _agreement(per_row: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean agreement over decided rows with two or more reviewers (None when there are none)."""
    values = [r["agreement"] for r in per_row if r["agreement"] is not None]
    return {"agreement": round(mean(values), 4) if values else None, "multi_reviewed": len(values)}
