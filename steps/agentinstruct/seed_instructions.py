"""Flow 2, seed-instruction generation.

An agent per task/question type reads the transformed text and returns a list of tasks of its type (one
subcategory of the skill).
"""

import json
import string
from collections.abc import Hashable
from typing import Any, ClassVar

from typing_extensions import override

from steps.agentinstruct import structure
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


class SeedInstructionGeneration(AgentTask):
    """Asks the item's instruction agent for a list of tasks of its type from the passage.

    The reply's schema depends on the agent's output (plain tasks, questions, tool requests) and
    is bounded by the number of tasks asked for (the plan's `tasks`, else `max_items`). Tasks
    that break their skill's structure are rejected and recorded; a shortfall is recorded too.

    Input columns:
        - item_id, skill: the work item.
        - passage (`str`): the transformed text.
        - instruction_agent (`str`): the agent id; tasks (`int`, optional): tasks to ask for.

    Output columns:
        - units (`list[dict]`): one round-0 version per kept task.
        - failed (`bool`): no task kept.

    Failure reasons: `fewer_tasks`, `missing_options`, `duplicate_options`,
    `answer_not_an_option`, `invalid_api_list`, `missing_call`, `unexpected_call`, `unknown_api`,
    `unknown_argument`, `missing_required_argument`, and LLMStep's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2, seed instruction generation flow.
    """

    stage: ClassVar[str] = "seed_instruction_generation"
    max_items: int = 2  # tasks asked of each agent call

    @property
    @override
    def inputs(self) -> list[str]:
        return [*super().inputs, "passage", "instruction_agent"]

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "units", "failed"]

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill = self.skill(input)
        agent = skill.instruction_agent(input["instruction_agent"])
        frame = agent.prompt or self._taxonomy.prompts.instruction[agent.output]
        prompt = frame.format(
            skill_name=skill.name,
            agent_name=agent.name,
            agent_instructions=agent.instructions,
            max_items=self._asked(input),
            text=input["passage"],
        )
        return [Request(AGENT_KEY, agent.id, [{"role": "user", "content": prompt}],
                        task_list(agent.output, self._asked(input), skill.is_multiple_choice(agent)))]

    def _asked(self, row: dict[str, Any]) -> int:
        """Tasks to ask for: as many as the plan says this item needs (`tasks`), else max_items."""
        return row.get("tasks") or self.max_items

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        """Keep the tasks that hold their skill's structure (`structure.task_problem`).

        Record each rejected task, and each task asked for but not written, as a failure.
        """
        skill = self.skill(row)
        agent = skill.instruction_agent(row["instruction_agent"])
        kept: list[tuple[str, str | None]] = []
        if AGENT_KEY in replies:
            reply = replies[AGENT_KEY]
            (field,) = type(reply).model_fields  # a task list has exactly one field
            items = getattr(reply, field)
            for index, item in enumerate(items):
                instruction, answer = _task(item)
                problem = structure.task_problem(skill, agent, item, instruction, row["passage"],
                                                 self._taxonomy)
                if problem:
                    raw = item if isinstance(item, str) else item.model_dump_json()
                    row.setdefault("failures", []).append(
                        structure.failure(self.stage, agent.id, problem, raw, index))
                else:
                    kept.append((instruction, answer))
            row.setdefault("failures", []).extend([  # fewer tasks than asked: the shortfall counts
                structure.failure(self.stage, agent.id, "fewer_tasks", reply.model_dump_json(), i)
                for i in range(len(items), self._asked(row))])
        # A unit is one (task, refinement round) version; round 0 is the seed instruction.
        row["units"] = [
            {"task": i, "round": 0, "goal": None, "instruction": text, "passage": row["passage"],
             "reference_answer": answer, "response": None}
            for i, (text, answer) in enumerate(kept)
        ]
        row["failed"] = not row["units"]
