"""Seed documents: the raw text and code that AgentInstruct transforms (no seed prompts).

A source is a local folder of text/code files, a .jsonl/.parquet file with a text column, or a
Hub dataset id with one. Bad seeds (empty, binary, unreadable) stop the run with one line naming
the file, since a silently skipped seed would skew the skill mix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from steps.errors import UserError

TEXT_SUFFIXES = {".txt", ".md", ".rst"}
CODE_SUFFIXES = {
    ".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".h", ".cpp", ".cs", ".rb", ".php",
    ".sql", ".sh", ".kt", ".swift", ".scala", ".r", ".jl", ".lua", ".hs",
}
TEXT_COLUMNS = ("text", "content", "code", "document")


@dataclass(frozen=True)
class Seed:
    id: str  # content hash: the same document keeps its id wherever it comes from
    source: str  # file path or dataset row reference
    text: str
    kind: str  # "text" or "code"


def _seed(source: str, text: str, kind: str) -> Seed:
    return Seed(hashlib.sha256(text.encode()).hexdigest()[:16], source, text, kind)


def _read_file(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"--seeds: {path} looks binary (NUL bytes); remove it or convert it to text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--seeds: {path} is not UTF-8 text; re-encode it as UTF-8") from None
    if not text.strip():
        raise UserError(f"--seeds: {path} is empty; remove it or give it content")
    return text


def _from_folder(folder: Path) -> list[Seed]:
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | CODE_SUFFIXES
    )
    if not files:
        raise UserError(f"--seeds: {folder} holds no .txt/.md or code files")
    return [
        _seed(str(p.relative_to(folder)), _read_file(p),
              "code" if p.suffix.lower() in CODE_SUFFIXES else "text")
        for p in files
    ]


def _from_frame(frame: pl.DataFrame, name: str, text_column: str | None) -> list[Seed]:
    column = text_column or next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    if column is None or column not in frame.columns:
        raise UserError(
            f"--seeds: {name} has no text column (tried {text_column or ', '.join(TEXT_COLUMNS)}); "
            "name it with --text-column"
        )
    kind_column = next((c for c in ("kind", "language", "lang") if c in frame.columns), None)
    seeds = []
    for index, row in enumerate(frame.iter_rows(named=True)):
        text = row[column]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"--seeds: {name} row {index}: empty {column!r}")
        kind = "text"
        if kind_column and row[kind_column]:
            kind = "text" if row[kind_column] in ("text", "en", "natural") else "code"
        seeds.append(_seed(f"{name}#{index}", text, kind))
    if not seeds:
        raise UserError(f"--seeds: {name} has no rows")
    return seeds


def load_seeds(source: str, text_column: str | None = None) -> list[Seed]:
    """All seeds of a source, in a stable order."""
    path = Path(source)
    if path.is_dir():
        return _from_folder(path)
    if path.suffix in (".jsonl", ".parquet"):
        if not path.is_file():
            raise UserError(f"--seeds: {path} not found")
        try:
            frame = pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_parquet(path)
        except Exception as error:  # polars raises several types for corrupt input
            raise UserError(f"--seeds: cannot read {path}: {str(error).splitlines()[0]}") from None
        return _from_frame(frame, str(path), text_column)
    if path.exists() or "/" not in source or source.startswith((".", "/")):
        raise UserError(
            f"--seeds: {source} is not a folder, a .jsonl/.parquet file or a Hub dataset id"
        )
    try:
        import datasets

        dataset = datasets.load_dataset(source, split="train")
    except Exception as error:
        raise UserError(
            f"--seeds: cannot load Hub dataset {source!r} ({type(error).__name__}); check the id "
            "and your network, or pass a local folder"
        ) from None
    return _from_frame(pl.from_arrow(dataset.data.table), source, text_column)
