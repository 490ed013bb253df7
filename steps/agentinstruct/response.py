"""Teacher responses: every task version, shown to the teacher as the student will see it.

In a multi-turn skill, the teacher answers each new user turn of the conversation so far.
"""

from collections.abc import Hashable
from typing import Any, ClassVar

from typing_extensions import override

from steps.agentinstruct.agent_task import AgentTask, Request
from steps.taxonomy import Context


def student_chat(context: Context, unit: dict[str, Any], tools_system: str) -> list[dict[str, str]]:
    """The conversation up to the first answer.

    Passage inside the user turn, tools in the system turn, or the task alone when it must stand on its
    own.
    """
    if context == "tools":
        return [{"role": "system", "content": tools_system.format(apis=unit["passage"])},
                {"role": "user", "content": unit["instruction"]}]
    if context == "passage":
        return [{"role": "user", "content": f"{unit['passage']}\n\n{unit['instruction']}"}]
    return [{"role": "user", "content": unit["instruction"]}]


class ResponseGeneration(AgentTask):
    """The teacher's answer to every task version, and to each new user turn after it.

    The teacher sees the task as the student will (`student_chat`): passage in the user turn,
    APIs in the system turn, or the task alone. A unit whose first answer failed is dropped from
    `units` (its failure is recorded); an unanswered follow-up turn is removed.

    Input columns:
        - item_id, skill, instruction_agent: the work item.
        - units (`list[dict]`): task versions.

    Output columns:
        - units: each with `messages` ending in the teacher's answer.

    Failure reasons: LLMStep's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2 (the teacher answers the generated tasks).
    """

    stage: ClassVar[str] = "response_generation"

    @property
    @override
    def inputs(self) -> list[str]:
        return [*super().inputs, "units", "instruction_agent"]

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "units"]

    def _chat(self, row: dict[str, Any], unit: dict[str, Any]) -> list[dict[str, str]] | None:
        """What to answer.

        The conversation so far if its last turn is the user's, the student's first turn if nothing
        was answered yet, else nothing.
        """
        if unit.get("messages"):
            return unit["messages"] if unit["messages"][-1]["role"] == "user" else None
        skill = self.skill(row)
        context = skill.context_of(skill.instruction_agent(row["instruction_agent"]))
        return student_chat(context, unit, self._taxonomy.prompts.tools_system)

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        return [Request((unit["task"], unit["round"]), "teacher", chat)
                for unit in input["units"] if (chat := self._chat(input, unit))]

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        units = []
        for unit in row["units"]:
            chat, key = self._chat(row, unit), (unit["task"], unit["round"])
            if chat is None:
                units.append(unit)  # already answered: untouched
            elif key in replies:
                units.append({**unit, "messages": [*chat, {"role": "assistant",
                                                            "content": replies[key]}]})
            elif unit.get("messages"):  # a follow-up went unanswered: keep the earlier turns
                units.append({**unit, "messages": unit["messages"][:-1]})
        row["units"] = units  # a unit whose first answer failed is gone (and in `failures`)
