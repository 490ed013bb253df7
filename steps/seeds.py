"""Seed documents: the raw text and code that AgentInstruct transforms (no seed prompts).

A source is a local folder of text/code files, a .jsonl/.parquet file with a text column, or a
Hub dataset id with one. A seed file that should be text but is empty, binary or undecodable stops
the run with one line naming the file, since a silently skipped seed would skew the skill mix.
Everything else that is not used is counted by reason in a `SeedReport`, never dropped unnamed:
other entries of a folder (images, tables, hidden files, broken or looping links), duplicates, and
seeds cut to fit the engine's context (`fit_seeds`). Files in UTF-16/32 or with a byte-order mark
are decoded (and counted as re-decoded); the mark never reaches the text or the seed id.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from steps.errors import UserError
from steps.llms.tokenizer import Tokenize

TEXT_SUFFIXES = {".txt", ".md", ".rst"}
CODE_SUFFIXES = {
    ".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".h", ".cpp", ".cs", ".rb", ".php",
    ".sql", ".sh", ".kt", ".swift", ".scala", ".r", ".jl", ".lua", ".hs",
}
TEXT_COLUMNS = ("text", "content", "code", "document")
# Byte-order marks, longest first (UTF-32-LE's mark starts with UTF-16-LE's).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"))
# C0 controls other than whitespace and ESC (coloured logs) mean a binary file read as text.
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
NAMES_KEPT = 20  # names per reason kept in the report (counts are always complete)

# text -> token ids; `len` of the result is what counts. `utf8_bytes` is an upper bound for
# byte-level BPE tokenizers (each token covers at least one byte) when the engine's is unknown.


@dataclass(frozen=True)
class Seed:
    """One seed document: content id, source, text and kind."""

    id: str  # content hash: the same document keeps its id wherever it comes from
    source: str  # path relative to the seeds folder, or `<file>#<row>`
    text: str
    kind: str  # "text" or "code"


@dataclass
class SeedReport:
    """What loading and fitting the seeds did besides using them, for the log, run.json and card.

    `skipped` maps a reason (`unsupported_type`, `hidden`, `broken_link`, `linked_folder`,
    `duplicate`) to the entries skipped for it, named relative to the seeds folder; `decoded` maps
    an encoding other than plain UTF-8 to the seeds read with it; `truncated` names the seeds cut
    to the engine's token budget, `budget_tokens` being that budget.
    """

    skipped: dict[str, list[str]] = field(default_factory=dict)
    decoded: dict[str, list[str]] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)
    budget_tokens: int | None = None

    def skip(self, reason: str, name: str) -> None:
        """Record that `name` was skipped for `reason`."""
        self.skipped.setdefault(reason, []).append(name)

    def as_dict(self) -> dict[str, Any]:
        """JSON for run.json and the card: counts per reason plus the first names of each."""
        return {
            "skipped": {reason: {"count": len(names), "names": names[:NAMES_KEPT]}
                        for reason, names in sorted(self.skipped.items())},
            "skipped_total": sum(len(names) for names in self.skipped.values()),
            "redecoded": {enc: {"count": len(names), "names": names[:NAMES_KEPT]}
                          for enc, names in sorted(self.decoded.items())},
            "redecoded_total": sum(len(names) for names in self.decoded.values()),
            "truncated": {"count": len(self.truncated), "names": self.truncated[:NAMES_KEPT],
                          "budget_tokens": self.budget_tokens},
        }

    def summary(self) -> str:
        """One line for the log, e.g. `skipped 2 (unsupported_type 2: a.png, b.csv); …`."""
        def names(items: list[str]) -> str:
            more = f", … {len(items) - 3} more" if len(items) > 3 else ""
            return ", ".join(items[:3]) + more

        parts = []
        if self.skipped:
            parts.append(f"skipped {sum(map(len, self.skipped.values()))} (" + "; ".join(
                f"{reason} {len(items)}: {names(items)}"
                for reason, items in sorted(self.skipped.items())) + ")")
        if self.decoded:
            parts.append(f"re-decoded {sum(map(len, self.decoded.values()))} (" + "; ".join(
                f"{enc} {len(items)}: {names(items)}" for enc, items in sorted(self.decoded.items()))
                + ")")
        if self.truncated:
            parts.append(f"cut to {self.budget_tokens} tokens {len(self.truncated)} "
                         f"({names(self.truncated)})")
        return "; ".join(parts) or "none skipped, re-decoded or cut"


class Seeds(list[Seed]):
    """The seeds of a source in a stable order (a list), with the report of what else happened."""

    def __init__(self, seeds: Iterable[Seed] = (), report: SeedReport | None = None) -> None:
        """The seeds, with the report of what was skipped."""
        super().__init__(seeds)
        self.report = report or SeedReport()


def _seed(source: str, text: str, kind: str) -> Seed:
    return Seed(hashlib.sha256(text.encode()).hexdigest()[:16], source, text, kind)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 without a mark: text in a Latin script has a NUL in every other byte."""
    if len(data) < 2 or len(data) % 2:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    half = len(data) // 2
    if odd >= 0.3 * half and even == 0:
        return "utf-16-le"
    if even >= 0.3 * half and odd == 0:
        return "utf-16-be"
    return None


def decode(data: bytes, name: str) -> tuple[str, str]:
    """The text of a seed file and the encoding read (`utf-8` plain, else what was re-decoded).

    Raises:
        UserError: the file is binary, not UTF-8/16/32 text, or empty (one line naming it).
    """
    encoding, body = "utf-8", data
    for mark, codec in BOMS:
        if data.startswith(mark):
            encoding, body = (f"{codec} with BOM" if codec == "utf-8" else codec), data[len(mark):]
            break
    else:
        if b"\x00" in data and (guess := _utf16_without_bom(data)):
            encoding = guess
    try:
        text = body.decode(encoding.removesuffix(" with BOM"))
    except UnicodeDecodeError:
        if b"\x00" in data:
            raise UserError(f"--seeds: {name} looks binary (NUL bytes); remove it or convert it "
                            "to text") from None
        raise UserError(f"--seeds: {name} is not UTF-8/UTF-16 text; re-encode it as UTF-8") from None
    if CONTROL.search(text):
        raise UserError(f"--seeds: {name} looks binary (control bytes); remove it or convert it "
                        "to text")
    if not text.strip():
        raise UserError(f"--seeds: {name} is empty; remove it or give it content")
    return text, encoding


def _from_folder(folder: Path) -> Seeds:
    """Every text/code file under `folder`, in path order; other entries skipped by reason."""
    report = SeedReport()
    files: list[tuple[str, Path]] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        for name in sorted(dirs):
            rel = (here / name).relative_to(folder).as_posix() + "/"
            if name.startswith("."):
                report.skip("hidden", rel)
                dirs.remove(name)
            elif (here / name).is_symlink():  # not followed: a link may loop back
                report.skip("linked_folder", rel)
        for name in names:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if name.startswith("."):
                report.skip("hidden", rel)
            elif path.is_symlink() and not path.exists():  # dangling, or a loop (ELOOP)
                report.skip("broken_link", rel)
            elif not path.is_file():
                report.skip("not_a_file", rel)
            elif path.suffix.lower() not in TEXT_SUFFIXES | CODE_SUFFIXES:
                report.skip("unsupported_type", rel)
            else:
                files.append((rel, path))
    for reason in report.skipped:
        report.skipped[reason].sort()
    seeds = Seeds(report=report)
    seen: dict[str, str] = {}
    for rel, path in sorted(files):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserError(f"--seeds: cannot read {rel} ({error.strerror}); fix its "
                            "permissions or remove it") from None
        text, encoding = decode(data, rel)
        if encoding != "utf-8":
            report.decoded.setdefault(encoding, []).append(rel)
        seed = _seed(rel, text, "code" if path.suffix.lower() in CODE_SUFFIXES else "text")
        if seed.id in seen:
            report.skip("duplicate", f"{rel} (same text as {seen[seed.id]})")
            continue
        seen[seed.id] = rel
        seeds.append(seed)
    if not seeds:
        skipped = f" (skipped: {report.summary()})" if report.skipped else ""
        raise UserError(f"--seeds: {folder.name or folder} holds no .txt/.md or code files{skipped}")
    return seeds


def _from_frame(frame: pl.DataFrame, name: str, text_column: str | None) -> Seeds:
    column = text_column or next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    if column is None or column not in frame.columns:
        raise UserError(
            f"--seeds: {name} has no text column (tried {text_column or ', '.join(TEXT_COLUMNS)}); "
            "name it with --text-column"
        )
    kind_column = next((c for c in ("kind", "language", "lang") if c in frame.columns), None)
    seeds = Seeds()
    seen: dict[str, str] = {}
    for index, row in enumerate(frame.iter_rows(named=True)):
        text = row[column]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"--seeds: {name} row {index}: empty {column!r}")
        if text.startswith("\ufeff"):
            text = text[1:]
            seeds.report.decoded.setdefault("utf-8 with BOM", []).append(f"row {index}")
        kind = "text"
        if kind_column and row[kind_column]:
            kind = "text" if row[kind_column] in ("text", "en", "natural") else "code"
        seed = _seed(f"{name}#{index}", text, kind)
        if seed.id in seen:
            seeds.report.skip("duplicate", f"row {index} (same text as row {seen[seed.id]})")
            continue
        seen[seed.id] = str(index)
        seeds.append(seed)
    if not seeds:
        raise UserError(f"--seeds: {name} has no rows")
    return seeds


def load_seeds(source: str, text_column: str | None = None) -> Seeds:
    """All seeds of a source, in a stable order, with a report (`Seeds.report`).

    The report names what was skipped or re-decoded.

    Raises:
        UserError: the source cannot be read, holds no seeds, or a seed file is bad.
    """
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
        return _from_frame(frame, path.name, text_column)
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


# --- fitting seeds into the engine's context ---------------------------------------------------

MAX_CHARS_PER_TOKEN = 16  # no tokenizer packs more into one token; bounds the text tokenized


def cut_to_tokens(text: str, tokenize: Tokenize, max_tokens: int) -> str:
    """The longest prefix of `text` with at most `max_tokens` tokens.

    It ends at a word boundary when one is near (CJK text has none, and is cut between
    characters).
    """
    window = text[: max_tokens * MAX_CHARS_PER_TOKEN]
    if len(tokenize(window)) <= max_tokens:
        if window == text:
            return text
        fits = len(window)
    else:
        fits, too_long = 0, len(window)  # binary search: tokens grow with the prefix
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            if len(tokenize(window[:middle])) <= max_tokens:
                fits = middle
            else:
                too_long = middle
    cut = window[:fits]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:boundary].rstrip() if boundary >= len(cut) - 200 and boundary > 0 else cut


def fit_seeds(seeds: Seeds, tokenize: Tokenize, max_tokens: int) -> Seeds:
    """Seeds cut to at most `max_tokens` tokens of the engine.

    The budget comes from `steps.agentinstruct.plan.seed_token_budget`; each cut seed is named in
    the report. A cut seed keeps its id (the id names the document). Calling again with a second
    engine's tokenizer cuts further where that one needs it.

    Raises:
        UserError: the budget is below 1 token (the context cannot hold any seed).
    """
    if max_tokens < 1:
        raise UserError("the engine's context leaves no room for a seed next to the prompt and "
                        "its output; lower --agent-max-tokens/--teacher-max-tokens or use a "
                        "larger context")
    report = replace(seeds.report, truncated=list(seeds.report.truncated),
                     budget_tokens=min(filter(None, (seeds.report.budget_tokens, max_tokens))))
    fitted = Seeds(report=report)
    for seed in seeds:
        text = cut_to_tokens(seed.text, tokenize, max_tokens)
        if text != seed.text:
            if seed.source not in report.truncated:
                report.truncated.append(seed.source)
            seed = replace(seed, text=text)
        fitted.append(seed)
    return fitted
