"""Rows as Argilla records: stable ids, the chat field, metadata, judge suggestions and vectors.

A record's id hashes the row's provenance id together with its messages: the same row pushed again
maps to the same record, and a row regenerated with new content becomes a new record instead of
inheriting reviews of text nobody read.
"""

from __future__ import annotations

from typing import Any

import argilla as rg

from steps.review.queue_settings import (
    EMBEDDING,
    JUDGE_MODEL,
    JUDGE_PREFIX,
    JUDGE_SCORE,
    MESSAGES,
    QUALITY,
    TERMS_METADATA,
)
from steps.rows import stable_id

# argilla-server's limits on chat messages; a row breaking them would fail its whole batch
MAX_MESSAGE_CHARS = 20_000
MAX_ROLE_CHARS = 20


def record_id(row: dict[str, Any]) -> str:
    """A stable record id from the row's id and messages."""
    return stable_id("argilla-review", row["id"], row[MESSAGES])


def unpushable_reason(row: dict[str, Any]) -> str | None:
    """Why the server would refuse this row (counted, never dropped silently), or None."""
    messages = row.get(MESSAGES) or []
    if not messages:
        return "no_messages"
    for message in messages:
        if not message.get("role") or len(message["role"]) > MAX_ROLE_CHARS:
            return "bad_role"
        if not message.get("content"):
            return "empty_message"
        if len(message["content"]) > MAX_MESSAGE_CHARS:
            return f"message_over_{MAX_MESSAGE_CHARS}_chars"
    return None


def lengths(messages: list[dict[str, str]]) -> dict[str, int]:
    """Turns, characters before the last reply, and characters of the last reply."""
    *prompt, last = messages
    return {"turns": len(messages), "prompt_chars": sum(len(m["content"]) for m in prompt),
            "response_chars": len(last["content"])}


def to_record(row: dict[str, Any], metadata_names: set[str], vector_names: set[str]) -> rg.Record:
    """The record for `row`, with only the metadata and vectors its dataset defines."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row[MESSAGES]]
    values = {name: row.get(column) for name, column in TERMS_METADATA.items()} | lengths(messages)
    values |= {name: row.get(name) for name in metadata_names if name.startswith(JUDGE_PREFIX)}
    embedding = row.get(EMBEDDING)
    score = row.get(JUDGE_SCORE)
    suggestions = [rg.Suggestion(QUALITY, int(score + 0.5), type="model",
                                 agent=row.get(JUDGE_MODEL) or "llm-judge")
                   ] if score is not None and 1 <= score <= 5 else []
    return rg.Record(
        id=record_id(row),
        fields={MESSAGES: messages},
        metadata={k: v for k, v in values.items() if k in metadata_names and v is not None},
        vectors={EMBEDDING: list(embedding)} if embedding and EMBEDDING in vector_names else {},
        suggestions=suggestions,
    )


def with_correction(messages: list[dict[str, str]], text: str) -> list[dict[str, str]]:
    """`messages` with the last assistant reply replaced by `text` (appended if there is none)."""
    corrected = [dict(message) for message in messages]
    replies = [i for i, message in enumerate(corrected) if message["role"] == "assistant"]
    if replies:
        corrected[replies[-1]]["content"] = text
    else:
        corrected.append({"role": "assistant", "content": text})
    return corrected
