"""Magpie's instruction tags by an LLM judge (Magpie paper, arXiv 2406.08464, §3).

The judge follows magpie-align/magpie `exp/unitag.py`.

Task category, input quality and difficulty of a conversation's first instruction, with the scales in
taxonomies/magpie/tagging.yaml.

The judge answers one JSON object that the engine constrains to a schema of the allowed values
(llama.cpp compiles it to a grammar; servers get `response_format`), at temperature 0. An answer
that still does not parse (`judge_unparsable`), or an engine error, leaves the tags null and is
recorded as a failure of the step (stage `tagging`); the conversation is kept.
"""

import json
from collections.abc import Hashable
from functools import cache
from typing import Any

from distilabel.typing import StepColumns
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import override

from steps import DATA_ROOT
from steps.errors import UserError
from steps.llm_step import OutputError, Request
from steps.magpie.task import MagpieTask
from steps.taxonomy import first_error, read_yaml

TAGGING_FILE = DATA_ROOT / "taxonomies" / "magpie" / "tagging.yaml"
TAG_COLUMNS = ["task_category", "input_quality", "difficulty"]
JUDGE_MAX_TOKENS = 96  # above the longest answer the schema allows, so the grammar ends it


class TagScales(BaseModel):
    """The tagging.yaml file: task categories, input quality and difficulty scales, judge prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_categories: dict[str, str] = Field(min_length=1)  # name: what it covers
    input_quality: dict[str, str] = Field(min_length=2)  # worst first
    difficulty: list[str] = Field(min_length=2)  # easiest first
    prompt: str

    def schema(self) -> dict[str, Any]:
        """JSON schema of the judge's reply: the three tags, each one of its scale."""
        return {
            "type": "object",
            "properties": {
                "task_category": {"type": "string", "enum": list(self.task_categories)},
                "input_quality": {"type": "string", "enum": list(self.input_quality)},
                "difficulty": {"type": "string", "enum": self.difficulty},
            },
            "required": TAG_COLUMNS,
            "additionalProperties": False,
        }

    def judge_prompt(self, instruction: str) -> str:
        """The judge prompt for `instruction`, with the scales spelled out."""
        return self.prompt.format(
            instruction=instruction,
            categories="\n".join(f"- {k}: {v}" for k, v in self.task_categories.items()),
            qualities="\n".join(f"- {k}: {v}" for k, v in self.input_quality.items()),
            difficulties=", ".join(self.difficulty),
        )

    def parse(self, text: str | None) -> dict[str, str] | None:
        """The three tags, or None when the answer is not a JSON object of allowed values."""
        try:
            answer = json.loads(text or "")
        except json.JSONDecodeError:
            return None
        allowed = {"task_category": self.task_categories, "input_quality": self.input_quality,
                   "difficulty": self.difficulty}
        if not isinstance(answer, dict) or any(answer.get(k) not in v for k, v in allowed.items()):
            return None
        return {key: answer[key] for key in TAG_COLUMNS}


@cache
def load_tag_scales() -> TagScales:
    """The tag scales of taxonomies/magpie/tagging.yaml.

    Raises:
        UserError: the file does not fit the schema.
    """
    try:
        return TagScales.model_validate(read_yaml(TAGGING_FILE))
    except ValidationError as error:
        raise UserError(f"{TAGGING_FILE}: {first_error(error)}") from None


def first_instruction(messages: list[dict[str, str]]) -> str:
    """The first user turn of a conversation."""
    return next(m["content"] for m in messages if m["role"] == "user")


class MagpieTagger(MagpieTask):
    """Tags each live conversation's first instruction; the judge is any engine.

    Input columns:
        - conversation_id, messages, failed.

    Output columns:
        - task_category, input_quality, difficulty (`str | None`): null when the judge failed.

    Failure reasons: `judge_unparsable`, and LLMStep's (the conversation is kept).

    References:
        - Magpie paper (arXiv 2406.08464) §3: task category, input quality and difficulty tags
          by an LLM judge.
    """

    @property
    @override
    def inputs(self) -> StepColumns:
        return ["conversation_id", "messages", "failed"]

    @property
    @override
    def outputs(self) -> StepColumns:
        return [*super().outputs, *TAG_COLUMNS]

    @override
    def requests(self, row: dict[str, Any]) -> list[Request]:
        scales = load_tag_scales()
        prompt = scales.judge_prompt(first_instruction(row["messages"]))
        return [Request("tags", "judge", [{"role": "user", "content": prompt}], scales.schema())]

    @override
    def parse(self, text: str, request: Request) -> dict[str, str]:
        tags = load_tag_scales().parse(text)
        if tags is None:
            raise OutputError("judge_unparsable")
        return tags

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row.update(replies.get("tags") or dict.fromkeys(TAG_COLUMNS))
