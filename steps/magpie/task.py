"""The distilabel Task every LLM step of the Magpie pipeline is: one seeded call per live row.

Magpie sends the same prompt many times (every neutral turn-1 instruction prompt is identical),
and engines seed sampling per (seed, prompt), so one seed per batch would repeat one instruction
across the batch. Each row gets its own seed from (run seed, conversation, step): outputs depend
neither on batching nor on order. A row that failed upstream passes through untouched, so every
conversation reaches the end of the pipeline, as a row or as a counted failure.
"""

# No `from __future__ import annotations`: distilabel reads the `StepInput` hint of process()
# at run time and does not resolve string annotations.

import asyncio
import inspect
from abc import abstractmethod
from typing import Any

from distilabel.models.llms.base import AsyncLLM
from distilabel.steps import StepInput
from distilabel.steps.tasks import Task
from distilabel.typing import StepOutput

from steps.rows import stable_id

# Columns that say why a conversation stopped: reason, the step it stopped in, the raw output.
FAILURE_COLUMNS = ["failure", "failure_stage", "failure_raw"]


def is_live(row: dict[str, Any]) -> bool:
    """Not failed upstream. `messages` is None when an earlier step raised (distilabel then
    forwards its batch with every output set to None)."""
    return row.get("failure") is None and row.get("messages") is not None


def row_seed(seed: int, conversation_id: int, stage: str) -> int:
    return int(stable_id(seed, conversation_id, stage), 16) % 2**31


def generate_seeded(llm: Any, inputs: list[Any], seeds: list[int]) -> list[str | None]:
    """One generation per input with its own seed; None where the engine failed. An engine
    without a per-call seed (vLLM, seeded once) gets the whole batch in one call."""
    kwargs = dict(llm.get_generation_kwargs())
    is_async = isinstance(llm, AsyncLLM)
    if "seed" not in inspect.signature(llm.agenerate if is_async else llm.generate).parameters:
        outputs = llm.generate_outputs(inputs=inputs, num_generations=1, **kwargs)
    elif is_async:  # keep requests to a server concurrent

        async def all_inputs() -> list[Any]:
            calls = [llm.agenerate(input=item, num_generations=1, **kwargs | {"seed": seed})
                     for item, seed in zip(inputs, seeds, strict=True)]
            return await asyncio.gather(*calls, return_exceptions=True)

        outputs = llm.event_loop.run_until_complete(all_inputs())
    else:
        outputs = [llm.generate(inputs=[item], num_generations=1, **kwargs | {"seed": seed})[0]
                   for item, seed in zip(inputs, seeds, strict=True)]
    texts: list[str | None] = []
    for output in outputs:
        if isinstance(output, BaseException):
            llm._logger.warning(f"engine call failed: {output}")
            texts.append(None)
        else:
            texts.append(output["generations"][0])
    return texts


class MagpieTask(Task):
    """A Task whose `format_output(text, row)` returns the new columns, or a failure."""

    seed: int = 0

    @property
    def stage(self) -> str:
        """Names this step in seeds and failure counts."""
        return self.name

    @abstractmethod
    def format_input(self, input: dict[str, Any]) -> Any: ...

    @abstractmethod
    def format_output(self, output: str | None, input: dict[str, Any]) -> dict[str, Any]: ...

    def fail(self, reason: str, raw: str | None) -> dict[str, Any]:
        return {"failure": reason, "failure_stage": self.stage, "failure_raw": raw}

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        live = [row for row in inputs if is_live(row)]
        texts = generate_seeded(
            self.llm,
            [self.format_input(row) for row in live],
            [row_seed(self.seed, row["conversation_id"], self.stage) for row in live],
        )
        produced = {id(row): self.format_output(text, row)
                    for row, text in zip(live, texts, strict=True)}
        yield [{**row, **produced.get(id(row), {})} for row in inputs]
