"""Feeding rows to a pipeline until a token or cost cap is reached (issue 11).

`--max-tokens-total` / `--max-cost`:

    generator (FeedWithinBudget) ─▶ … LLM steps … ─▶ a step that appends finished rows to a ledger

The step that finishes rows appends one JSON line per row to a ledger file: the row's id and its
`tokens` ({input, output} of its requests, `steps.llm_step`'s counts). Before each batch the
generator waits until every row fed more than BUDGET_WINDOW - 1 batches ago is in the ledger,
then stops feeding once those tokens (plus what earlier tries spent) reach the cap: batches
already fed run to the end, so a run passes its cap by at most what is in flight. orca3_mix's
PlannedItems reads its committed checkpoints instead of a ledger (`_used`).
"""

import json
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from distilabel.steps import GeneratorStep
from distilabel.typing import GeneratorStepOutput

from steps.estimate import TokenBudget

BUDGET_WINDOW = 2  # batches fed ahead of the last finished one while a cap is set


def read_ledger(path: str) -> list[dict[str, Any]]:
    """The complete lines of a ledger file (a line still being written is left out; no file: [])."""
    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def append_ledger(path: str, rows: list[dict[str, Any]]) -> None:
    """Append `rows` as JSON lines, in one write of whole lines: a reader never sees half of one."""
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write("".join(json.dumps(row, ensure_ascii=False, default=str) + "\n"
                             for row in rows))


def ledger_tokens(lines: list[dict[str, Any]]) -> dict[str, int]:
    """Input and output tokens summed over ledger lines (their `tokens`)."""
    return {k: sum(int((line.get("tokens") or {}).get(k) or 0) for line in lines)
            for k in ("input", "output")}


class FeedWithinBudget(GeneratorStep):
    """A generator that feeds its rows in batches and, with a budget, stops once it is reached.

    `budget`: TokenBudget's fields (None: no cap); `spent`: tokens ({input, output}) of earlier
    tries or stages, counted against it; `ledger_file`: where the finishing step(s) append a line
    per row (`id_column`, `tokens`), `copies` lines per row (one per branch that finishes it).
    Once the cap is reached one more row is fed as the last batch (distilabel ends a run only on
    a non-empty last batch) and the rest is never fed. A subclass that measures tokens elsewhere
    overrides `measures` and `_used`.
    """

    id_column: ClassVar[str]
    copies: ClassVar[int] = 1
    budget: dict[str, Any] | None = None
    spent: dict[str, int] = {}
    ledger_file: str | None = None

    def feed(self, items: Sequence[Any], key: Callable[[Any], Hashable] | None = None,
             ) -> GeneratorStepOutput:
        """`items` in batches of `batch_size`, the last one flagged; fewer once the cap is reached.

        `key` gives an item's id in the ledger (default: its `id_column`).
        """
        key = key or (lambda item: item[self.id_column])
        budget = TokenBudget(**self.budget) if self.budget and self.measures else None
        size = self.batch_size or 1
        for start in range(0, len(items), size):
            if budget is not None:
                # distilabel asks a generator for batches long before they are finished: only
                # BUDGET_WINDOW batches are unfinished at a time, so the overshoot stays small.
                finished = items[: max(0, start - (BUDGET_WINDOW - 1) * size)]
                if reason := budget.reached(self._used({key(item) for item in finished})):
                    self._logger.warning(reason)
                    yield list(items[start : start + 1]), True
                    return
            batch = list(items[start : start + size])
            yield batch, start + len(batch) >= len(items)

    @property
    def measures(self) -> bool:
        """Whether finished rows' tokens can be read (here: a ledger file is set)."""
        return self.ledger_file is not None

    def _used(self, wanted: set[Hashable], poll_s: float = 0.2) -> dict[str, int]:
        """Tokens used so far, once every row of `wanted` is in the ledger `copies` times."""
        while True:
            lines = read_ledger(self.ledger_file or "")
            seen = Counter(line[self.id_column] for line in lines)
            if all(seen[row_id] >= self.copies for row_id in wanted):
                used = ledger_tokens(lines)
                return {k: self.spent.get(k, 0) + used[k] for k in used}
            time.sleep(poll_s)
