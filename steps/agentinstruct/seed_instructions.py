"""Flow 2, seed-instruction generation: an agent per task/question type reads the transformed
text and returns a list of tasks of its type (one subcategory of the skill)."""

from __future__ import annotations

import json
import string
from collections.abc import Hashable
from typing import Any, ClassVar

from pydantic import BaseModel

from steps.agentinstruct.agent_task import AgentTask, Request
from steps.agentinstruct.outputs import Question, ToolRequest, task_list

AGENT_KEY = "tasks"


def _task(item: str | Question | ToolRequest) -> tuple[str, str | None]:
    """(the instruction shown to the student, the agent's own answer if it gave one)."""
    if isinstance(item, Question):
        options = "".join(f"\n{string.ascii_uppercase[i]}) {o}" for i, o in enumerate(item.options))
        return item.question + options, item.answer
    if isinstance(item, ToolRequest):
        return item.request, json.dumps(item.call.model_dump() if item.call else None)
    return item, None


def _tasks(reply: BaseModel) -> list[tuple[str, str | None]]:
    (field,) = type(reply).model_fields  # a task list has exactly one field
    return [_task(item) for item in getattr(reply, field)]


class SeedInstructionGeneration(AgentTask):
    stage: ClassVar[str] = "seed_instruction_generation"
    max_items: int = 2  # tasks asked of each agent call

    @property
    def inputs(self) -> list[str]:
        return [*super().inputs, "passage", "instruction_agent"]

    @property
    def outputs(self) -> list[str]:
        return [*super().outputs, "units", "failed"]

    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill = self.skill(input)
        agent = skill.instruction_agent(input["instruction_agent"])
        frame = agent.prompt or self._taxonomy.prompts.instruction[agent.output]
        prompt = frame.format(
            skill_name=skill.name,
            agent_name=agent.name,
            agent_instructions=agent.instructions,
            max_items=self.max_items,
            text=input["passage"],
        )
        return [Request(AGENT_KEY, agent.id, [{"role": "user", "content": prompt}],
                        task_list(agent.output, self.max_items))]

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        tasks = _tasks(replies[AGENT_KEY]) if AGENT_KEY in replies else []
        # A unit is one (task, refinement round) version; round 0 is the seed instruction.
        row["units"] = [
            {"task": i, "round": 0, "goal": None, "instruction": text, "passage": row["passage"],
             "reference_answer": answer, "response": None}
            for i, (text, answer) in enumerate(tasks)
        ]
        row["failed"] = not row["units"]
