"""Where rows come from and go: Parquet files/globs, a local dataset folder, or a Hub dataset.

Every input becomes a list of `ConfigInput` (a config name and its Parquet files) read with polars
lazy scans in row batches, so memory holds one batch of documents at a time. A Hub dataset is
loaded with `datasets` (offline this fails with a UserError) and written once to Parquet in a
work folder. Output configs are written by a streaming polars sink to a temporary file that then
replaces `data/<config>/train-00000-of-00001.parquet`, so curating a folder in place is safe.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from steps.errors import UserError
from steps.repo_folder import DATA_DIR, config_file, configs

ROW_INDEX = "__curation_row"
# Rows per output row group: the sink buffers one, so this bounds its memory (polars' default,
# ~250k rows, held ~700 MB of 300-word rows).
OUTPUT_ROW_GROUP = 10_000
FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".txt", ".arrow")
# A Hub dataset id: `org/name`, optionally `:config`; anything else is a local path.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
MESSAGES_TYPE = "a list of {role, content} structs of strings (TRL's `messages`)"


def is_hub_id(spec: str) -> bool:
    """Whether `spec` names a Hub dataset (`org/name[:config]`) rather than a local path.

    It is not an existing path and does not look like one (a file suffix, `./`, `/`, `~`, two slashes).
    """
    return (not Path(spec).exists() and HUB_ID.match(spec) is not None
            and not spec.lower().endswith(FILE_SUFFIXES))


def check_text_column(source: ConfigInput, column: str, schema: pl.Schema) -> None:
    """Raise a UserError naming the file when the curated column has the wrong type.

    Raises:
        UserError: `messages` is not a list of {role, content} string structs, or a plain text
            column is not a string column.
    """
    dtype = schema[column]
    if column == "messages" and not _is_messages(dtype):
        raise UserError(f"input {source.files[0]}: column `messages` is {dtype}; it must be "
                        f"{MESSAGES_TYPE}, or pass --text-column NAME for a plain-text column")
    if column != "messages" and dtype != pl.String and not isinstance(dtype, pl.Categorical | pl.Enum):
        raise UserError(f"input {source.files[0]}: --text-column {column!r} is {dtype}; it must "
                        "be a string column")


def _is_messages(dtype: pl.DataType) -> bool:
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        return False
    fields = {f.name: f.dtype for f in dtype.inner.fields}
    return fields.get("role") == pl.String and fields.get("content") == pl.String


@dataclass(frozen=True)
class ConfigInput:
    """The Parquet files of one dataset config."""

    config: str
    files: tuple[Path, ...]

    def scan(self) -> pl.LazyFrame:
        """A lazy scan of all the files."""
        return pl.scan_parquet(list(self.files))

    def schema(self) -> pl.Schema:
        """The files' schema.

        Raises:
            UserError: a file cannot be read as Parquet.
        """
        try:
            return self.scan().collect_schema()
        except Exception as error:  # polars raises several types for unreadable files
            raise UserError(f"input {self.files[0]}: cannot read it as Parquet ({error})") from None

    def batches(self, columns: list[str], rows: int) -> Iterator[pl.DataFrame]:
        """The `columns` in frames of `rows` rows, in file order."""
        yield from self.scan().select(columns).collect_batches(chunk_size=rows)

    def rows(self, wanted: np.ndarray, columns: list[str] | None = None) -> pl.DataFrame:
        """The rows whose positions (sorted) are in `wanted`, in order."""
        frame = self.scan().with_row_index(ROW_INDEX).filter(
            pl.col(ROW_INDEX).is_in(pl.Series(wanted.astype(np.uint32)).implode()))
        return frame.select(columns).collect() if columns else frame.drop(ROW_INDEX).collect()

    def write_rows(self, kept: np.ndarray, out_dir: Path) -> Path:
        """Stream the rows at positions `kept` into the output config file."""
        path = config_file(out_dir, self.config)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        (self.scan().with_row_index(ROW_INDEX)
         .filter(pl.col(ROW_INDEX).is_in(pl.Series(kept.astype(np.uint32)).implode()))
         .drop(ROW_INDEX).sink_parquet(tmp, row_group_size=OUTPUT_ROW_GROUP))
        _restore_schema(tmp, pq.read_schema(self.files[0]))
        for stale in path.parent.glob("*.parquet"):
            if stale != path:
                stale.unlink()
        os.replace(tmp, path)
        return path


def _restore_schema(path: Path, schema: pa.Schema) -> None:
    """Give the written file its input's Arrow schema back, batch by batch.

    Polars writes large string/list types, and configs of one repository must share one schema to load as
    a mix.
    """
    if pq.read_schema(path).remove_metadata().equals(schema.remove_metadata()):
        return
    recast = path.with_suffix(".cast")
    with pq.ParquetWriter(recast, schema) as writer:
        for batch in pq.ParquetFile(path).iter_batches():
            writer.write_batch(batch.cast(schema))
    os.replace(recast, path)


def _config_from_path(path: Path) -> str:
    """`…/data/<config>/file.parquet` names its config; any other file is `default`."""
    parts = path.parts
    return parts[-2] if len(parts) >= 3 and parts[-3] == DATA_DIR else "default"


def _from_hub(dataset_id: str, work_dir: Path, split: str) -> list[ConfigInput]:
    import datasets  # heavy import, only for Hub inputs

    repo, _, only = dataset_id.partition(":")
    try:
        names = [only] if only else datasets.get_dataset_config_names(repo)
        found = []
        for name in names:
            target = work_dir / "hub" / name / "train.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            datasets.load_dataset(repo, name, split=split).to_parquet(str(target))
            found.append(ConfigInput(name, (target,)))
        return found
    except Exception as error:
        raise UserError(f"input {dataset_id!r}: cannot load it from the Hub ({type(error).__name__});"
                        " offline, download it elsewhere and pass its Parquet files") from None


def repo_folder_of(specs: list[str]) -> Path | None:
    """The local dataset folder when the input is exactly one (it has a `data/` folder)."""
    if len(specs) == 1 and (Path(specs[0]) / DATA_DIR).is_dir():
        return Path(specs[0])
    return None


def resolve_inputs(specs: list[str], work_dir: Path, hub_split: str = "train") -> list[ConfigInput]:
    """Config inputs for Parquet files/globs, dataset folders or Hub ids (`org/name[:config]`)."""
    files: dict[str, list[Path]] = {}
    hub: list[ConfigInput] = []
    for spec in specs:
        path = Path(spec)
        if (path / DATA_DIR).is_dir():
            for config in configs(path):
                files.setdefault(config, []).extend(sorted((path / DATA_DIR / config).glob("*.parquet")))
        elif path.is_dir():
            files.setdefault("default", []).extend(sorted(path.rglob("*.parquet")))
        elif matches := sorted(glob.glob(spec, recursive=True)):
            for match in map(Path, matches):
                files.setdefault(_config_from_path(match), []).append(match)
        elif is_hub_id(spec):
            hub.extend(_from_hub(spec, work_dir, hub_split))
        else:
            raise UserError(f"input {spec!r}: no such Parquet file, glob or folder (a Hub id is "
                            "org/name)")
    found = [ConfigInput(name, tuple(paths)) for name, paths in sorted(files.items()) if paths]
    found += hub
    if not found:
        raise UserError(f"input {' '.join(specs)}: no Parquet files found")
    return found
