"""Magpie's conversation loop as distilabel steps (magpie.md §1, §5).

    MagpieConversations          N empty conversations, each with its steering domain
    MagpieInstruction            the model writes the next user turn from the pre-query prompt
    MagpieResponse               the model answers it

A pipeline chains one instruction and one response step per turn, each with its own engine and
sampling settings. Prompts are raw text from the model's chat template (chat_template.py).
"""

from __future__ import annotations

from typing import Any

from distilabel.steps import GeneratorStep
from distilabel.typing import GeneratorStepOutput, StepColumns
from pydantic import Field

from steps.magpie.chat_template import ChatTemplate, Message
from steps.magpie.task import FAILURE_COLUMNS, MagpieTask

CONVERSATION_COLUMNS = ["conversation_id", "domain", "messages", *FAILURE_COLUMNS]


class MagpieConversations(GeneratorStep):
    """Emits `num_rows` empty conversations in batches of `batch_size`, domains in turn.

    The last batch is flagged as last when the rows run out, whatever the remainder:
    distilabel's MagpieGenerator does so only when `num_rows` is a multiple of `batch_size`
    and otherwise overshoots and hangs (magpie.md §10.3).
    """

    num_rows: int = Field(ge=1)
    domains: list[str] = Field(min_length=1)

    @property
    def outputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        if offset >= self.num_rows:  # resumed after the last batch
            yield [], True
            return
        for start in range(offset, self.num_rows, self.batch_size):  # type: ignore[arg-type]
            end = min(start + self.batch_size, self.num_rows)  # type: ignore[operator]
            rows = [
                {"conversation_id": i, "domain": self.domains[i % len(self.domains)],
                 "messages": [], "failure": None, "failure_stage": None, "failure_raw": None}
                for i in range(start, end)
            ]
            yield rows, end == self.num_rows


class MagpieInstruction(MagpieTask):
    """The next user turn: the pre-query prompt of the conversation so far, completed by the model.

    `system_prompts` maps each domain to the system prompt of this turn's instruction prompt
    (None: none). The instruction is stripped; an empty one ends the conversation as a failure.
    """

    template: ChatTemplate
    system_prompts: dict[str, str | None]

    @property
    def inputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    @property
    def outputs(self) -> StepColumns:
        return ["messages", *FAILURE_COLUMNS]

    def history(self, row: dict[str, Any]) -> list[Message]:
        system = self.system_prompts[row["domain"]]
        return [*([{"role": "system", "content": system}] if system else []), *row["messages"]]

    def format_input(self, input: dict[str, Any]) -> str:
        return self.template.for_engine(self.template.pre_query_prompt(self.history(input)))

    def format_output(self, output: str | None, input: dict[str, Any]) -> dict[str, Any]:
        if output is None:
            return self.fail("engine_error", None)
        instruction = output.strip()
        if not instruction:
            return self.fail("empty_instruction", output)
        return {"messages": [*input["messages"], {"role": "user", "content": instruction}]}


class MagpieResponse(MagpieTask):
    """The next assistant turn: the conversation (no steering system prompt) answered by the model.

    With a `template` the prompt is its raw rendering (the instruction engine answering itself);
    without, the engine gets chat messages and applies its own (a different response engine).
    """

    template: ChatTemplate | None = None

    @property
    def inputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    @property
    def outputs(self) -> StepColumns:
        return ["messages", *FAILURE_COLUMNS]

    def format_input(self, input: dict[str, Any]) -> str | list[Message]:
        if self.template is None:
            return input["messages"]
        return self.template.for_engine(self.template.response_prompt(input["messages"]))

    def format_output(self, output: str | None, input: dict[str, Any]) -> dict[str, Any]:
        if output is None:
            return self.fail("engine_error", None)
        response = output.strip()
        if not response:
            return self.fail("empty_response", output)
        return {"messages": [*input["messages"], {"role": "assistant", "content": response}]}
