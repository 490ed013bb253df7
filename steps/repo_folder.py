"""The local dataset repository: the folder every run writes and `--push-to-hub` uploads as is.

Layout (what the Hub and `datasets.load_dataset(folder, name=config)` read):

    data/<config>/train-00000-of-00001.parquet   one config per skill split, plus magpie, failures…
    run.json                                     config, seeds, model ids, package versions
    funnel.parquet                               rows in / removed per reason / rows out (curation)
    README.md, plots/*.png                       the dataset card (written by the publish step)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DATA_DIR = "data"
RUN_FILE = "run.json"
FUNNEL_FILE = "funnel.parquet"
REVIEW_FILE = "review.json"
STATS_FILE = "stats.json"  # curation's settings and counts (steps.curation.run)
FAILURES = "failures"  # the config of items that never became rows (FAILURE_SCHEMA)
REVIEWED = "reviewed"  # the config of rows kept after Argilla review


def config_file(repo_dir: Path, config: str) -> Path:
    """The one Parquet file of `config`: `data/<config>/train-00000-of-00001.parquet`."""
    return repo_dir / DATA_DIR / config / "train-00000-of-00001.parquet"


def write_config(repo_dir: Path, config: str, table: pa.Table) -> Path | None:
    """Write one config atomically (temp file then rename), replacing what was there.

    A config with no rows is never written, and one left from an earlier run is removed:
    `datasets.load_dataset(folder)` fails on an empty Parquet config for the whole mix.

    Returns:
        The Parquet file written, or None when `table` has no rows.
    """
    path = config_file(repo_dir, config)
    if not table.num_rows:
        remove_config(repo_dir, config)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("*.parquet"):
        stale.unlink()
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def remove_config(repo_dir: Path, config: str) -> None:
    """Remove a config's files (and its folder once empty); nothing if it is not there."""
    folder = config_file(repo_dir, config).parent
    for stale in folder.glob("*.parquet"):
        stale.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def read_config(repo_dir: Path, config: str) -> pa.Table:
    """The rows of `config` as an Arrow table.

    Raises:
        FileNotFoundError: the folder holds no such config.
    """
    return pq.read_table(config_file(repo_dir, config))


def configs(repo_dir: Path) -> list[str]:
    """Config names present in the folder, sorted."""
    data = repo_dir / DATA_DIR
    return sorted(p.name for p in data.iterdir() if any(p.glob("*.parquet"))) if data.exists() else []


def row_counts(repo_dir: Path) -> dict[str, int]:
    """Rows per data config as the folder holds them now (after curation, say).

    Read from Parquet metadata; the failures and reviewed configs are not data and are left out.
    """
    return {config: pq.read_metadata(config_file(repo_dir, config)).num_rows
            for config in configs(repo_dir) if config not in (FAILURES, REVIEWED)}


def add_generation_results(repo_dir: Path, failures: pa.Table, funnel: pa.Table) -> None:
    """Add one flow's failure records and generation-stage funnel rows to the folder.

    They are appended to what the folder holds: several flows can write into one repository
    folder.
    """
    if failures.num_rows:
        if FAILURES in configs(repo_dir):
            failures = pa.concat_tables([read_config(repo_dir, FAILURES), failures])
        write_config(repo_dir, FAILURES, failures)
    path = repo_dir / FUNNEL_FILE
    if path.exists():
        funnel = pa.concat_tables([pq.read_table(path), funnel])
    pq.write_table(funnel, path)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` as indented, key-sorted JSON, atomically (temp file then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
