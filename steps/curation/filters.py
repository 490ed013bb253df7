"""Row filters: message structure, parse validity, length, language, refusal/boilerplate.

Message structure (what TRL's SFTTrainer and chat templates accept): an optional system turn,
then user and assistant turns alternating, starting with the user and ending with the assistant
(`role_order`); every turn must hold a letter or digit (`empty_turn`: empty, whitespace-only or
punctuation-only turns such as `", "`). A row without messages or text is `invalid_messages`.

Each returns, per row of a batch, whether the row fails; `filter_reasons` applies them in order
with each skill's settings and names the first failure, the reason counted in the funnel.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from steps.curation.config import CurationConfig, FilterConfig
from steps.curation.normalise import Texts
from steps.errors import UserError

# Assistant openings and stock phrases of refusals and AI boilerplate (case-insensitive).
REFUSAL_PATTERNS = (
    r"^\s*(i'm|i am|i’m) (sorry|afraid)[^.]{0,40}\b(can(no|')?t|unable|not able)",
    r"^\s*i (can(no|')?t|can’t|am unable to|won't|will not) (help|assist|comply|provide|fulfil)",
    r"\bas an ai (language )?model\b",
    r"\bas a large language model\b",
    r"\bi (do not|don't) have (personal )?(opinions|feelings|the ability to browse)\b",
)
_REFUSAL = "(?i)" + "|".join(f"(?:{p})" for p in REFUSAL_PATTERNS)

FILTER_REASONS = ("invalid_messages", "role_order", "empty_turn", "parse_json", "too_short",
                  "too_long", "language", "refusal")
ROLE_ORDER = r"^(system,)?user,assistant(,user,assistant)*$"
SUBSTANCE = r"[\p{L}\p{N}]"  # a turn needs a letter or a digit (Unicode classes)


def invalid_messages(batch: pl.DataFrame, text_column: str | None,
                     word_counts: np.ndarray) -> np.ndarray:
    """A text without words, or a row without messages."""
    if text_column is not None:
        return word_counts == 0
    return batch.select(pl.col("messages").list.len().fill_null(0) == 0).to_series().to_numpy()


def role_order_fails(batch: pl.DataFrame) -> np.ndarray:
    """Roles are not [system] user assistant (user assistant)* (module docstring)."""
    roles = pl.col("messages").list.eval(pl.element().struct.field("role").fill_null("?")).list.join(",")
    return batch.select(~roles.str.contains(ROLE_ORDER).fill_null(False)).to_series().to_numpy()


def empty_turn_fails(batch: pl.DataFrame) -> np.ndarray:
    """Some turn holds no letter or digit (empty, whitespace or punctuation only)."""
    blank = ~pl.element().struct.field("content").fill_null("").str.contains(SUBSTANCE)
    return batch.select(pl.col("messages").list.eval(blank).list.any().fill_null(True)
                        ).to_series().to_numpy()


def _json_fails(text: str) -> bool:
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


def parse_fails(texts: Texts, rows: np.ndarray) -> np.ndarray:
    """The last assistant turn of `rows` does not parse as JSON (fences allowed)."""
    fails = np.zeros(len(texts.assistant), dtype=bool)
    assistant = texts.assistant
    for row in np.flatnonzero(rows):
        fails[row] = _json_fails(assistant[int(row)].as_py() or "")
    return fails


def language_fails(texts: Texts, rows: np.ndarray, languages: list[str]) -> np.ndarray:
    """Per row (True only among `rows`), whether py3langid's language is not in `languages`.

    Raises:
        UserError: py3langid is not installed.
    """
    try:
        import py3langid
    except ImportError:
        raise UserError("the language filter needs py3langid: pip install py3langid") from None
    fails = np.zeros(len(texts.dedup), dtype=bool)
    for row in np.flatnonzero(rows):
        fails[row] = py3langid.classify(texts.dedup[int(row)].as_py() or "")[0] not in languages
    return fails


def refusal_fails(texts: Texts) -> np.ndarray:
    """Per row, whether the assistant text contains a refusal phrase."""
    return pl.from_arrow(texts.assistant).str.contains(_REFUSAL).fill_null(False).to_numpy()


def filter_reasons(batch: pl.DataFrame, texts: Texts, word_counts: np.ndarray,
                   config: CurationConfig) -> np.ndarray:
    """Per row, the index in FILTER_REASONS of its first failing filter, or -1."""
    reason = np.full(len(batch), -1, dtype=np.int16)

    def fail(mask: np.ndarray, name: str) -> None:
        reason[(reason < 0) & mask] = FILTER_REASONS.index(name)

    fail(invalid_messages(batch, config.text_column, word_counts), "invalid_messages")
    if config.text_column is None:
        fail(role_order_fails(batch), "role_order")
        fail(empty_turn_fails(batch), "empty_turn")
    if "skill" in batch.columns:
        skills = batch.get_column("skill").fill_null("")
        groups = [(skill, (skills == skill).to_numpy()) for skill in skills.unique().sort()]
    else:
        groups = [("", np.ones(len(batch), dtype=bool))]
    refusals = None
    for skill, members in groups:
        rows = members & (reason < 0)
        settings: FilterConfig = config.filters_for(skill)
        if settings.format == "json" and config.text_column is None:
            fail(rows & parse_fails(texts, rows), "parse_json")
        fail(rows & (word_counts < settings.min_words), "too_short")
        if settings.max_words is not None:
            fail(rows & (word_counts > settings.max_words), "too_long")
        if settings.languages:
            fail(rows & language_fails(texts, rows & (reason < 0), settings.languages), "language")
        if settings.refusal and config.text_column is None:
            refusals = refusal_fails(texts) if refusals is None else refusals
            fail(rows & refusals, "refusal")
    return reason
