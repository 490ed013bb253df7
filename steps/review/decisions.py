"""How the reviewers' answers to one record become a decision: kept or discarded, and how sure.

Only final answers count: a response submitted, or discarded with Argilla's Discard button (a
discard vote whatever it holds). Drafts are ignored. A record stays pending until it has the
dataset's `min_submitted` final answers. The majority of keep/discard votes decides and a tie
discards, so a row ships only when most of its reviewers wanted it. Agreement is the share of
reviewers on the winning side, defined from two reviewers on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from statistics import mean
from typing import Any, Literal

from steps.review.queue_settings import CORRECTION, DISCARD, KEEP, QUALITY

FINAL_STATUSES = ("submitted", "discarded")


@dataclass(frozen=True)
class Answer:
    """One reviewer's response to one record, as the server stores it."""

    status: str  # draft | submitted | discarded
    values: dict[str, Any]  # question name -> value

    @property
    def discards(self) -> bool:
        """Whether the answer discards the record (discarded, or the keep question says so)."""
        return self.status == "discarded" or self.values.get(KEEP) == DISCARD


@dataclass(frozen=True)
class Decision:
    """The outcome of a record's final answers: state, votes, quality, agreement, correction."""

    state: Literal["pending", "kept", "discarded"]
    reviewers: int  # final answers
    keep_votes: int
    discard_votes: int
    quality: float | None  # mean rating of the final answers that rated
    agreement: float | None  # share of reviewers on the winning side; None below two reviewers
    correction: str | None  # the replacement for the last reply, only for kept records


def decide(answers: list[Answer], min_submitted: int = 1) -> Decision:
    """Decide a record from its answers; pending until `min_submitted` final answers."""
    final = [a for a in answers if a.status in FINAL_STATUSES]
    discard_votes = sum(a.discards for a in final)
    keep_votes = len(final) - discard_votes
    ratings = [a.values[QUALITY] for a in final if isinstance(a.values.get(QUALITY), int | float)]
    quality = mean(ratings) if ratings else None
    if not final or len(final) < min_submitted:
        return Decision("pending", len(final), keep_votes, discard_votes, quality, None, None)
    kept = keep_votes > discard_votes
    corrections = [text.strip() for a in final if not a.discards
                   and isinstance(text := a.values.get(CORRECTION), str) and text.strip()]
    # the correction most keep-voters gave; on a tie, the one given first
    correction = Counter(corrections).most_common(1)[0][0] if kept and corrections else None
    agreement = max(keep_votes, discard_votes) / len(final) if len(final) >= 2 else None
    return Decision("kept" if kept else "discarded", len(final), keep_votes, discard_votes,
                    quality, agreement, correction)
