"""Magpie's conversation loop as distilabel steps (Magpie paper, arXiv 2406.08464, §2).

    MagpieConversations          N empty conversations, each with its steering domain
    MagpieInstruction            the model writes the next user turn from the pre-query prompt
    MagpieResponse               the model answers it

A pipeline chains one instruction and one response step per turn, each with its own engine and
sampling settings. Prompts are raw text from the model's chat template (chat_template.py).
"""

from collections.abc import Hashable
from typing import Any, ClassVar

from distilabel.typing import GeneratorStepOutput, StepColumns
from pydantic import Field
from typing_extensions import override

from steps.budget import FeedWithinBudget
from steps.llm_step import OutputError, Request
from steps.magpie.chat_template import ChatTemplate, Message
from steps.magpie.task import FAILURE_COLUMNS, MagpieTask

CONVERSATION_COLUMNS = ["conversation_id", "domain", "messages", *FAILURE_COLUMNS]


class MagpieConversations(FeedWithinBudget):
    """Emits empty conversations in batches of `batch_size`, domains in turn.

    Conversation i (of `num_rows`) has domain i mod len(domains); `todo` lists the ids to emit
    (default: all), so a rerun makes only the conversations a capped or failed try left.
    Rows are seeded per conversation id (MagpieTask), so they do not depend on which try made
    them. With a budget (steps.budget.FeedWithinBudget: `--max-tokens-total`, `--max-cost`)
    conversations stop being fed once the finished ones' tokens reach it.

    The last batch is flagged as last when the rows run out, whatever the remainder:
    distilabel's MagpieGenerator does so only when `num_rows` is a multiple of `batch_size`
    and otherwise overshoots and hangs (distilabel 1.5.3: 10 rows in batches of 4 give 12 rows,
    then no `last_batch`).
    """

    id_column: ClassVar[str] = "conversation_id"
    num_rows: int = Field(ge=1)
    domains: list[str] = Field(min_length=1)
    todo: list[int] | None = None

    @property
    @override
    def outputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    @override
    def process(self, offset: int = 0) -> GeneratorStepOutput:
        ids = (range(self.num_rows) if self.todo is None else self.todo)[offset:]
        if not ids:  # nothing left, or resumed after the last batch
            yield [], True
            return
        for batch, last in self.feed(ids, key=lambda i: i):
            yield [{"conversation_id": i, "domain": self.domains[i % len(self.domains)],
                    "messages": [], "failures": [], "failed": False} for i in batch], last


class MagpieInstruction(MagpieTask):
    """The next user turn: the pre-query prompt of the conversation so far, completed by the model.

    `system_prompts` maps each domain to the system prompt of this turn's instruction prompt
    (None: none). The instruction is stripped.

    Input columns:
        - conversation_id, domain, messages, failures, failed: the conversation so far.

    Output columns:
        - messages (`list[dict]`): with the new user turn; failed: true when none was written.

    Failure reasons: `empty_instruction`, the engine's (LLMStep).

    References:
        - Magpie paper (arXiv 2406.08464) §2: step 1, instruction generation; multi-turn and
          domain steering by system prompt.
    """

    template: ChatTemplate
    system_prompts: dict[str, str | None]

    @property
    @override
    def inputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    @property
    @override
    def outputs(self) -> StepColumns:
        return [*super().outputs, "messages"]

    def history(self, row: dict[str, Any]) -> list[Message]:
        """The conversation so far, after this domain's system prompt when it has one."""
        system = self.system_prompts[row["domain"]]
        return [*([{"role": "system", "content": system}] if system else []), *row["messages"]]

    @override
    def requests(self, row: dict[str, Any]) -> list[Request]:
        prompt = self.template.for_engine(self.template.pre_query_prompt(self.history(row)))
        return [Request("user", "instruction", prompt)]

    @override
    def parse(self, text: str, request: Request) -> str:
        if not text.strip():
            raise OutputError("empty_instruction")
        return text.strip()

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        if "user" in replies:
            row["messages"] = [*row["messages"], {"role": "user", "content": replies["user"]}]
        row["failed"] = "user" not in replies


class MagpieResponse(MagpieTask):
    """The next assistant turn: the conversation (no steering system prompt) answered by the model.

    With a `template` the prompt is its raw rendering (the instruction engine answering itself);
    without, the engine gets chat messages and applies its own (a different response engine).

    Input columns:
        - conversation_id, domain, messages, failures, failed: the conversation so far.

    Output columns:
        - messages (`list[dict]`): with the new assistant turn; failed: true when none was written.

    Failure reasons: `empty_response`, the engine's (LLMStep).

    References:
        - Magpie paper (arXiv 2406.08464) §2: step 2, response generation.
    """

    template: ChatTemplate | None = None

    @property
    @override
    def inputs(self) -> StepColumns:
        return CONVERSATION_COLUMNS

    @property
    @override
    def outputs(self) -> StepColumns:
        return [*super().outputs, "messages"]

    @override
    def requests(self, row: dict[str, Any]) -> list[Request]:
        prompt: str | list[Message] = row["messages"] if self.template is None else (
            self.template.for_engine(self.template.response_prompt(row["messages"])))
        return [Request("assistant", "response", prompt)]

    @override
    def parse(self, text: str, request: Request) -> str:
        if not text.strip():
            raise OutputError("empty_response")
        return text.strip()

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        if "assistant" in replies:
            row["messages"] = [*row["messages"],
                               {"role": "assistant", "content": replies["assistant"]}]
        row["failed"] = "assistant" not in replies
