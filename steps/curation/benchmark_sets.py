"""Benchmark (eval) sets to decontaminate against: local files, folders or Hub dataset ids.

A spec is `[NAME=]SOURCE`. SOURCE is a .jsonl/.json/.parquet file, a folder (every such file in it,
recursively) or a Hub dataset id `org/name[:config]` (loaded with `datasets`, split `test`).
NAME defaults to the file stem, folder name or dataset id. Only an `org/name` form that is not a
local path and has no file suffix is a Hub id: `evals/missing.jsonl` is a missing file.
`check_benchmarks` checks every spec before any work (pipelines call it before generation).

Which text is an item: `field` when given; else a `messages` column's user turns; else the first
column present among PROMPT_FIELDS (a benchmark's question, not its answer: the Tülu 3 rule
compares training prompts with eval prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from steps.curation.sources import is_hub_id
from steps.errors import UserError

PROMPT_FIELDS = ("prompt", "question", "problem", "instruction", "input", "query", "text", "content")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class BenchmarkSet:
    """A benchmark's items as plain texts, for decontamination."""

    name: str
    items: list[str]


def item_texts(frame: pl.DataFrame, where: str, field: str | None = None) -> list[str]:
    """The item text of every row of a benchmark table (see module docstring for the choice)."""
    if field is None and "messages" in frame.columns:
        user = pl.element().struct.field("role") == "user"
        texts = frame.select(pl.col("messages").list.eval(
            pl.element().filter(user).struct.field("content")).list.join("\n"))
        return texts.to_series().fill_null("").to_list()
    chosen = field or next((name for name in PROMPT_FIELDS if name in frame.columns), None)
    if chosen is None or chosen not in frame.columns:
        wanted = f"field {field!r}" if field else f"one of {', '.join(PROMPT_FIELDS)} or messages"
        raise UserError(f"benchmark {where}: no {wanted} among columns {frame.columns}; "
                        "pass --benchmark-field NAME")
    return frame.get_column(chosen).cast(pl.String).fill_null("").to_list()


def _read_file(path: Path) -> pl.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".jsonl":
            return pl.read_ndjson(path)
        return pl.read_json(path)
    except Exception as error:  # polars raises several types for malformed files
        raise UserError(f"benchmark file {path}: cannot read it ({error})") from None


def _from_hub(dataset_id: str, field: str | None, split: str) -> list[str]:
    import datasets  # heavy import, only for Hub benchmarks

    repo, _, config = dataset_id.partition(":")
    try:
        table = datasets.load_dataset(repo, config or None, split=split).data.table
    except Exception as error:
        raise UserError(f"benchmark {dataset_id!r}: cannot load it from the Hub ({type(error).__name__}"
                        f"); offline, pass a local .jsonl/.parquet file or folder instead") from None
    return item_texts(pl.from_arrow(table), dataset_id, field)


def _split_spec(spec: str) -> tuple[str, str]:
    name, _, source = spec.rpartition("=") if "=" in spec else ("", "", spec)
    return name, source


def check_benchmarks(specs: list[str]) -> None:
    """Check benchmark specs without loading them.

    Local files exist with a known suffix, folders hold such files, anything else has the Hub id form.
    Cheap; call before any work.

    Raises:
        UserError: one line naming the first bad spec and what to pass instead.
    """
    for spec in specs:
        name, source = _split_spec(spec)
        path = Path(source)
        if "=" in spec and not name:
            raise UserError(f"--benchmarks {spec!r}: empty NAME before '='; pass NAME=SOURCE or SOURCE")
        if path.is_file():
            if path.suffix not in FILE_SUFFIXES:
                raise UserError(f"benchmark file {path}: expected one of {', '.join(FILE_SUFFIXES)}")
        elif path.is_dir():
            if not any(p.suffix in FILE_SUFFIXES for p in path.rglob("*")):
                raise UserError(f"benchmark folder {path}: no {'/'.join(FILE_SUFFIXES)} files in it")
        elif not is_hub_id(source):
            raise UserError(f"benchmark {source!r}: no such file or folder (a Hub dataset id is "
                            "org/name[:config])")


def load_benchmark(spec: str, field: str | None = None, split: str = "test") -> BenchmarkSet:
    """Load one benchmark set (module docstring).

    Raises:
        UserError: a missing or unreadable source, or no item column.
    """
    check_benchmarks([spec])
    name, source = _split_spec(spec)
    path = Path(source)
    if path.is_file():
        return BenchmarkSet(name or path.stem, item_texts(_read_file(path), str(path), field))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in FILE_SUFFIXES)
        items = [text for f in files for text in item_texts(_read_file(f), str(f), field)]
        return BenchmarkSet(name or path.name, items)
    return BenchmarkSet(name or source, _from_hub(source, field, split))
