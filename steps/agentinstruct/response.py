"""Teacher responses: every task version, shown to the teacher as the student will see it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar

from steps.agentinstruct.agent_task import AgentTask, Request
from steps.taxonomy import Context


def student_chat(context: Context, unit: dict[str, Any], tools_system: str) -> list[dict[str, str]]:
    """The conversation up to the answer: passage inside the user turn, tools in the system turn,
    or the task alone when it must stand on its own."""
    if context == "tools":
        return [{"role": "system", "content": tools_system.format(apis=unit["passage"])},
                {"role": "user", "content": unit["instruction"]}]
    if context == "passage":
        return [{"role": "user", "content": f"{unit['passage']}\n\n{unit['instruction']}"}]
    return [{"role": "user", "content": unit["instruction"]}]


class ResponseGeneration(AgentTask):
    stage: ClassVar[str] = "response_generation"

    @property
    def inputs(self) -> list[str]:
        return [*super().inputs, "units", "instruction_agent"]

    @property
    def outputs(self) -> list[str]:
        return [*super().outputs, "units"]

    def _chat(self, row: dict[str, Any], unit: dict[str, Any]) -> list[dict[str, str]]:
        skill = self.skill(row)
        context = skill.context_of(skill.instruction_agent(row["instruction_agent"]))
        return student_chat(context, unit, self._taxonomy.prompts.tools_system)

    def format_input(self, input: dict[str, Any]) -> list[Request]:  # type: ignore[override]
        return [Request((unit["task"], unit["round"]), "teacher", self._chat(input, unit))
                for unit in input["units"]]

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row["units"] = [
            {**unit, "messages": [*self._chat(row, unit),
                                  {"role": "assistant", "content": replies[key]}]}
            for unit in row["units"] if (key := (unit["task"], unit["round"])) in replies
        ]
