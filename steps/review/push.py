"""Push row configs to Argilla review queues, each row once.

Before sending, the queue's record ids are read back from the server, and only rows whose record
does not exist yet are sent, in batches: pushing again adds nothing, and a push that stopped
halfway resumes where it stopped. Rows the server would refuse are counted by reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import argilla as rg
import pyarrow.parquet as pq

from steps.errors import UserError
from steps.repo_folder import REVIEWED, config_file, configs, read_config
from steps.review import server
from steps.review.queue_settings import queue_settings
from steps.review.records import record_id, to_record, unpushable_reason
from steps.taxonomy import Skill, Taxonomy

BATCH_SIZE = 256


@dataclass
class PushResult:
    """What pushing one config did: rows sent, already there, duplicates, refused by reason."""

    config: str
    dataset: str
    rows: int
    already_there: int = 0  # rows whose record the queue already had
    sent: int = 0
    duplicates: int = 0  # rows identical to an earlier row of the config (one record for both)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> rows the server would refuse


def review_configs(repo_dir: Path, names: list[str] | None) -> list[str]:
    """The configs to review: `names`, or every config of conversation rows except `reviewed`."""
    available = [c for c in configs(repo_dir) if c != REVIEWED
                 and {"id", "messages"} <= set(pq.read_schema(config_file(repo_dir, c)).names)]
    for name in names or []:
        if name not in available:
            raise UserError(f"--configs: {name!r} is not a row config of {repo_dir} "
                            f"(row configs: {', '.join(available) or 'none'})")
    return names or available


def queue_name(prefix: str, config: str) -> str:
    """The Argilla dataset name of a config's review queue."""
    return f"{prefix}-{config}"


def skill_of(config: str, skill_id: str | None, taxonomy: Taxonomy | None) -> Skill | None:
    """The taxonomy skill of a config (by its rows' skill id, else by split name), if any."""
    if taxonomy is None:
        return None
    return taxonomy.skills.get(skill_id or "") or taxonomy.by_split.get(config)


def push_config(client: rg.Argilla, ws: rg.Workspace, repo_dir: Path, config: str, prefix: str,
                taxonomy: Taxonomy | None, min_submitted: int) -> PushResult:
    """Push the rows of `config` to its review queue, creating the queue if needed."""
    table = read_config(repo_dir, config)
    rows = table.to_pylist()
    result = PushResult(config, queue_name(prefix, config), len(rows))
    dataset = server.find_dataset(ws, result.dataset)
    if dataset is None:
        skill_id = next((row["skill"] for row in rows if row.get("skill")), None)
        settings = queue_settings(config, table, skill_of(config, skill_id, taxonomy), min_submitted)
        dataset = rg.Dataset(name=result.dataset, workspace=ws, settings=settings, client=client)
        dataset.create()
    existing = {record.external_id for record in server.records(client, dataset, False)}
    unique: dict[str, dict] = {}
    for row in rows:
        if reason := unpushable_reason(row):
            result.refused[reason] += 1
        elif (rid := record_id(row)) in unique:
            result.duplicates += 1
        else:
            unique[rid] = row
    new = [row for rid, row in unique.items() if rid not in existing]
    result.already_there = len(unique) - len(new)
    metadata = {prop.name for prop in dataset.settings.metadata}
    vectors = {vector.name for vector in dataset.settings.vectors}
    if new:
        dataset.records.log([to_record(row, metadata, vectors) for row in new],
                            batch_size=min(BATCH_SIZE, len(new)))
    result.sent = len(new)
    return result
