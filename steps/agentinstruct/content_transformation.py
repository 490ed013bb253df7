"""Flow 1, content transformation.

A seed becomes an intermediate text suited to one skill (argument passage, meeting transcript, API list…),
which also adds diversity.
"""

import json
from collections.abc import Hashable
from typing import Any, ClassVar

from typing_extensions import override

from steps.agentinstruct import structure
from steps.agentinstruct.agent_task import AgentTask, Request
from steps.agentinstruct.outputs import ApiList

SEED_KEY = "seed"


class ContentTransformation(AgentTask):
    """Rewrites each seed into an intermediate text suited to the item's skill.

    One request per work item to its transformation agent; the identity agent keeps the seed as
    is, and an agent whose output is `apis` replies with an `ApiList` (tool use).

    Input columns:
        - item_id, skill: the work item.
        - seed_text (`str`): the seed, already cut to the engine's context.
        - transformation_agent (`str`): the agent id from the plan.

    Output columns:
        - passage (`str | None`): the transformed text (an API list as JSON for tool use).
        - failed (`bool`): no passage; with LLMStep's failures, tokens, calls, engine_retries.

    Failure reasons: `prompt_echo`, `placeholder`, and LLMStep's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2, content transformation flow.
    """

    stage: ClassVar[str] = "content_transformation"

    @property
    @override
    def inputs(self) -> list[str]:
        return [*super().inputs, "seed_text", "transformation_agent"]

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "passage", "failed"]

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill = self.skill(input)
        agent = skill.transformation_agent(input["transformation_agent"])
        if agent.identity:
            return []
        prompt = (agent.prompt or self._taxonomy.prompts.transformation).format(
            skill_name=skill.name,
            skill_description=skill.description,
            agent_name=agent.name,
            agent_instructions=agent.instructions,
            text=input["seed_text"],  # already cut to the engine's context (seeds.fit_seeds)
        )
        schema = ApiList if agent.output == "apis" else None
        return [Request(SEED_KEY, agent.id, [{"role": "user", "content": prompt}], schema)]

    def parse(self, text: str, request: Request) -> Any:
        """The base parse, then the echo and placeholder checks (`structure.check_reply`)."""
        reply = super().parse(text, request)
        if isinstance(reply, str):  # (an API list is checked by its schema)
            structure.check_reply(reply, request, self._taxonomy)
        return reply

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        agent = self.skill(row).transformation_agent(row["transformation_agent"])
        if agent.identity:
            row["passage"] = row["seed_text"]
        elif SEED_KEY in replies:
            reply = replies[SEED_KEY]
            row["passage"] = reply if isinstance(reply, str) else json.dumps(
                reply.model_dump()["apis"], indent=1, ensure_ascii=False)
        row["failed"] = "passage" not in row or row["passage"] is None
