"""Which text each stage reads from a row, as Arrow arrays ready for hashing.

Rows in ROW_SCHEMA carry `messages`; foreign data may instead have a plain text column. The texts:
- `user`: the user turns joined by newlines (the Magpie embedding rule is on the instruction);
- `conversation`: user and assistant turns, what decontamination scans (the Tülu 3 rule compares
  prompts; a benchmark item recited in an answer leaks as well);
- `assistant`: the assistant turns (refusal and format filters);
- `dedup`: what exact and near-dup compare, `conversation` (user + assistant turns, default) or
  `user`. The default is the whole conversation because here one prompt legitimately has several
  rows: ReST-EM keeps several correct solutions per problem and AgentInstruct asks several questions
  about one seed passage, so only rows whose prompt *and* answer nearly coincide are duplicates.
  `user` gives Magpie's instruction-level dedup.
Unicode, case, sentence punctuation and whitespace are normalised by the tokeniser
(`ngrams.words`); symbols, signs and numbers are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

DedupOn = Literal["conversation", "user"]


@dataclass(frozen=True)
class Texts:
    """The texts of a batch that filters and dedup read, one entry per row."""

    user: pa.Array
    assistant: pa.Array
    conversation: pa.Array
    dedup: pa.Array
    turns: np.ndarray  # int32, messages per row (1 for a plain text column)


def _turns_text(roles: tuple[str, ...]) -> pl.Expr:
    wanted = pl.element().struct.field("role").is_in(list(roles))
    return (pl.col("messages").list.eval(pl.element().filter(wanted).struct.field("content"))
            .list.join("\n").fill_null(""))


def to_arrow(series: pl.Series) -> pa.Array:
    """A polars column as a classic Arrow array (large_string, not string_view) for the kernels."""
    return series.to_arrow(compat_level=pl.CompatLevel.oldest())


def texts(batch: pl.DataFrame, text_column: str | None, dedup_on: DedupOn) -> Texts:
    """The texts of one batch (see the module docstring)."""
    if text_column is not None:
        text = to_arrow(batch.get_column(text_column).cast(pl.String))
        return Texts(text, text, text, text, np.ones(len(batch), dtype=np.int32))
    frame = batch.select(
        user=_turns_text(("user",)),
        assistant=_turns_text(("assistant",)),
        conversation=_turns_text(("user", "assistant")),
        turns=pl.col("messages").list.len().fill_null(0).cast(pl.Int32),
    )
    user, conversation = to_arrow(frame.get_column("user")), to_arrow(frame.get_column("conversation"))
    return Texts(user, to_arrow(frame.get_column("assistant")), conversation,
                 conversation if dedup_on == "conversation" else user,
                 frame.get_column("turns").to_numpy())


def input_columns(schema: pl.Schema, text_column: str | None, ids: bool = True) -> list[str]:
    """The columns curation reads (`id` only when `ids`, for the keep rule).

    KeyError when the text is missing.
    """
    wanted = [text_column or "messages"]
    if wanted[0] not in schema:
        raise KeyError(wanted[0])
    return wanted + [name for name in ("id", "skill") if name in schema and (ids or name != "id")]
