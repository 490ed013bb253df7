"""The base of every LLM step of the Magpie pipeline: one request per live conversation.

Magpie sends the same prompt many times (every neutral turn-1 instruction prompt is identical),
so seeds come per conversation: `steps.llm_step` seeds each request from (run seed,
conversation id, step), and outputs depend neither on batching nor on order. A conversation that
failed upstream passes through untouched, so every conversation reaches the end of the pipeline,
as a row or as counted failures (`failures`, `failed`).

(No `from __future__ import annotations` here: distilabel reads the `StepInput` hint at runtime.)
"""

from typing import ClassVar

from steps.llm_step import LLMStep

# Columns every conversation carries from the generator on: its failure records and whether it
# stopped (steps.llm_step's one convention).
FAILURE_COLUMNS = ["failures", "failed"]


class MagpieTask(LLMStep):
    """An LLM step of the Magpie pipeline; the stage is the step's name (instruction_1, …).

    Magpie keeps what the model wrote: a reply that does not parse is a failure, not re-asked
    (`max_retries` 0), so the instruction distribution is the model's own (magpie.md §1).
    """

    row_id: ClassVar[str] = "conversation_id"
    seed: int | None = 0
    max_retries: int = 0
