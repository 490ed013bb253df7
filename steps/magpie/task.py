"""The base of every LLM step of the Magpie pipeline: one request per live conversation.

Magpie sends the same prompt many times (every neutral turn-1 instruction prompt is identical),
so seeds come per conversation: `steps.llm_step` seeds each request from (run seed,
conversation id, step), and outputs depend neither on batching nor on order. A conversation that
failed upstream passes through untouched, so every conversation reaches the end of the pipeline,
as a row or as counted failures (`failures`, `failed`).
"""

from typing import ClassVar

from steps.llm_step import LLMStep

# Columns every conversation carries from the generator on: its failure records and whether it
# stopped (steps.llm_step's one convention).
FAILURE_COLUMNS = ["failures", "failed"]


class MagpieTask(LLMStep):
    """An LLM step of the Magpie pipeline; the stage is the step's name (instruction_1, …).

    Magpie keeps what the model wrote: a reply that does not parse is a failure, not re-asked
    (`max_retries` 0), so the instruction distribution is the model's own.

    Input columns:
        - conversation_id (`int`): seeds each request.

    Output columns and failure reasons: LLMStep's, plus the subclass's.

    References:
        - Magpie paper (arXiv 2406.08464) §2: instructions sampled from the pre-query template.
    """

    row_id: ClassVar[str] = "conversation_id"
    seed: int | None = 0
    max_retries: int = 0
