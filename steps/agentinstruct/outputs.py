"""What agents that return structure must return, as pydantic models.

The JSON schema of each model goes to the engine for grammar-constrained decoding, so every short
string and every list is bounded: small models otherwise run a string on until max_tokens and the
JSON never closes (seen with SmolLM2-135M under llama.cpp's JSON-schema grammar). The same model
then validates the text that comes back.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, create_model

Short = Annotated[str, StringConstraints(min_length=1, max_length=80)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=400)]


class Question(BaseModel):
    """A question an instruction agent wrote, with lettered options (may be none) and its answer."""

    question: Text
    options: list[Short] = Field(default_factory=list, max_length=5)  # A-E (select-all, LSAT)
    answer: Short


class MultipleChoiceQuestion(Question):
    """A question of a multiple-choice type.

    The grammar itself makes the options appear and the answer name them by letter (`B`, or `A, C` when
    several apply).
    """

    options: list[Short] = Field(min_length=2, max_length=5)
    answer: Annotated[str, StringConstraints(pattern=r"^[A-E](, [A-E]){0,4}$")]


class Argument(BaseModel):
    """One argument of a tool call: name and value as text."""

    name: Short
    value: Short


class ToolCall(BaseModel):
    """The call that answers a tool-use request: API name and arguments."""

    name: Short
    arguments: list[Argument] = Field(default_factory=list, max_length=6)


class ToolRequest(BaseModel):
    """A tool-use task: the user's request and the expected call (None: no API fits)."""

    request: Text
    call: ToolCall | None = None


class Parameter(BaseModel):
    """One parameter of an API in a tool-use API list."""

    name: Short
    type: Short
    description: Short
    required: bool


class Api(BaseModel):
    """One API of a tool-use API list: name, description, parameters."""

    name: Short
    description: Text
    parameters: list[Parameter] = Field(default_factory=list, max_length=6)


class ApiList(BaseModel):
    """The API list a tool-use transformation agent writes (1 to 5 APIs)."""

    apis: list[Api] = Field(min_length=1, max_length=5)


class Edit(BaseModel):
    """The Editor's reply: the rewritten task and, when the goal needs it, the passage."""

    instruction: Text
    # Unbounded in the schema on purpose: llama.cpp nests one grammar rule per allowed character,
    # and a passage-sized bound overflows its parser. max_new_tokens bounds it instead.
    text: str | None = None  # the edited passage, or null when the goal leaves it unchanged


# An instruction agent's reply: a list under one key, of plain tasks or structured items.
TASK_LISTS: dict[str, tuple[str, type]] = {
    "instructions": ("instructions", Text),
    "questions": ("questions", Question),
    "tool_requests": ("requests", ToolRequest),
}


@cache
def task_list(output: str, max_items: int, multiple_choice: bool = False) -> type[BaseModel]:
    """The reply model of an instruction agent, its list bounded so the grammar stops there.

    Questions of a multiple-choice agent must have options.
    """
    key, item = TASK_LISTS[output]
    if multiple_choice and item is Question:
        item = MultipleChoiceQuestion
    suffix = "_mc" if item is MultipleChoiceQuestion else ""
    return create_model(f"TaskList_{output}_{max_items}{suffix}",
                        **{key: (list[item], Field(min_length=1, max_length=max_items))})
