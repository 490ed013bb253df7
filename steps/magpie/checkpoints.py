"""A Magpie run's finished conversations, kept across tries so that a rerun makes only the rest.

    <output>/.work/<run id>/conversations/try-0000.jsonl, try-0001.jsonl, …

The last step of every try appends each finished conversation (its full record, with `tokens`)
to that try's file as the batch ends (steps.budget's ledger: the generator reads it to stop at a
cap). A conversation counts as done once a record of it is there whose failures a rerun would
not fix (`steps.llm_step.rerun_may_fix`: engine errors are retried). Conversations are seeded
per id (steps.magpie.task), so the rows do not depend on which try made them: a capped run
rerun with a higher cap ends with the rows of an uncapped run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps.budget import ledger_tokens, read_ledger
from steps.llm_step import rerun_may_fix

TRY_GLOB = "try-*.jsonl"


class ConversationCheckpoints:
    """The done conversations of the tries in `folder` (created when missing), by id."""

    def __init__(self, folder: Path) -> None:
        """Read every try's file in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        latest: dict[int, dict[str, Any]] = {}
        for ledger in sorted(folder.glob(TRY_GLOB)):  # later tries' records replace earlier ones
            latest.update((record["conversation_id"], record) for record in read_ledger(str(ledger)))
        self.done = {i: record for i, record in sorted(latest.items())
                     if not any(rerun_may_fix(f) for f in record.get("failures") or [])}

    @property
    def tokens(self) -> dict[str, int]:
        """Input and output tokens the done conversations used."""
        return ledger_tokens(list(self.done.values()))

    def next_ledger(self) -> Path:
        """The file this try appends its finished conversations to."""
        return self.folder / f"try-{len(list(self.folder.glob(TRY_GLOB))):04d}.jsonl"
