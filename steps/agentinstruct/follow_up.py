"""Follow-up turns for multi-turn skills (the `follow_up` split).

An agent plays the user and writes the next message from the conversation so far; the teacher then answers it.
"""

from collections.abc import Hashable
from typing import Any, ClassVar

from typing_extensions import override

from steps.agentinstruct import structure
from steps.agentinstruct.agent_task import AgentTask, Request


def _render(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)


class FollowUpQuestion(AgentTask):
    """Writes user turn `turn` of multi-turn skills: an agent plays the user.

    Only units whose conversation has `turn - 1` user turns and ends with an answer get a
    request; skills with fewer `turns` pass through.

    Input columns:
        - item_id, skill: the work item.
        - units (`list[dict]`): task versions, each with its `messages` so far.

    Output columns:
        - units: the same, a new user turn appended where a follow-up was written.

    Failure reasons: `prompt_echo`, `placeholder`, and LLMStep's.

    References:
        - Orca-AgentInstruct-1M dataset card, `follow_up` split (multi-turn conversations).
    """

    stage: ClassVar[str] = "follow_up"
    turn: int  # the user turn to write (2, 3, …); skills with fewer `turns` are left alone

    @property
    @override
    def inputs(self) -> list[str]:
        return [*super().inputs, "units"]

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "units"]

    def _wants_turn(self, row: dict[str, Any], unit: dict[str, Any]) -> bool:
        messages = unit.get("messages") or []
        users = sum(m["role"] == "user" for m in messages)
        return (self.skill(row).turns >= self.turn and users == self.turn - 1
                and bool(messages) and messages[-1]["role"] == "assistant")

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill = self.skill(input)
        return [
            Request((unit["task"], unit["round"]), "follow_up", [{"role": "user", "content":
                self._taxonomy.prompts.follow_up.format(
                    skill_name=skill.name, conversation=_render(unit["messages"]))}])
            for unit in input["units"] if self._wants_turn(input, unit)
        ]

    def parse(self, text: str, request: Request) -> Any:
        """The base parse, then the echo and placeholder checks (`structure.check_reply`)."""
        reply = super().parse(text, request)
        structure.check_reply(reply, request, self._taxonomy)
        return reply

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row["units"] = [
            {**unit, "messages": [*unit["messages"], {"role": "user", "content": reply}]}
            if (reply := replies.get((unit["task"], unit["round"]))) else unit
            for unit in row["units"]
        ]
