"""Flow 3, instruction refinement.

A Suggester proposes how to make a task harder (toward the round's goal, e.g. "make the question unanswerable
from the passage"), then an Editor rewrites the task (and the passage when the goal needs it). Each round adds
a new version of every task, so the dataset keeps the original and each refined variant, as in the paper.
"""

import json
from collections.abc import Hashable
from typing import Any, ClassVar

from typing_extensions import override

from steps.agentinstruct import structure
from steps.agentinstruct.agent_task import AgentTask, Request
from steps.agentinstruct.outputs import Edit


def _latest(row: dict[str, Any], round: int) -> list[dict[str, Any]]:
    """The versions made in `round` that the next round refines.

    One per task still being refined, and only the first `refined[round]` tasks where the plan says so
    (the quota).
    """
    refined = row.get("refined")
    limit = refined[round] if refined is not None and round < len(refined) else None
    return [unit for unit in row["units"]
            if unit["round"] == round and (limit is None or unit["task"] < limit)]


class _RefinementTask(AgentTask):
    round: int  # 1-based; round r refines the versions of round r-1

    def _goal(self, row: dict[str, Any]) -> Any:
        return self.skill(row).refinement_goal(row["refinement_goals"][self.round - 1])

    @property
    def inputs(self) -> list[str]:
        return [*super().inputs, "units", "refinement_goals"]


class Suggester(_RefinementTask):
    """Proposes how to make each latest task version harder, toward the round's goal.

    Input columns:
        - item_id, skill: the work item.
        - units (`list[dict]`): task versions; round `round - 1` ones are refined.
        - refinement_goals (`list[str]`): the goal id of each round.

    Output columns:
        - suggestions (`list[dict]`): {task, text} per task that got a suggestion.

    Failure reasons: LLMStep's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2, instruction refinement flow (Suggester-Editor).
    """

    stage: ClassVar[str] = "suggester"

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "suggestions"]

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill, goal = self.skill(input), self._goal(input)
        return [
            Request(unit["task"], f"suggester:{goal.id}", [{"role": "user", "content":
                self._taxonomy.prompts.suggester.format(
                    skill_name=skill.name, goal_name=goal.name, goal_instructions=goal.instructions,
                    text=unit["passage"], instruction=unit["instruction"])}])
            for unit in _latest(input, self.round - 1)
        ]

    @override
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        row["suggestions"] = [{"task": task, "text": text} for task, text in replies.items()]


class Editor(_RefinementTask):
    """Rewrites each task (and the passage when the goal needs it) from its suggestions.

    Every accepted edit adds a version of round `round`; earlier versions are kept, as in the
    paper. An edit that breaks the skill's structure is rejected and recorded, the task keeping
    its previous version.

    Input columns:
        - item_id, skill, instruction_agent: the work item.
        - units, refinement_goals: as for the Suggester.
        - suggestions (`list[dict]`): the Suggester's {task, text}.

    Output columns:
        - units: with the new versions appended.
        - suggestions: emptied.

    Failure reasons: `missing_options`, `invalid_api_list` (rejected edits), `prompt_echo`,
    `placeholder`, and LLMStep's.

    References:
        - AgentInstruct paper (arXiv 2407.03502) §2, instruction refinement flow (Suggester-Editor).
    """

    stage: ClassVar[str] = "editor"

    @property
    @override
    def inputs(self) -> list[str]:
        return [*super().inputs, "suggestions"]

    @property
    @override
    def outputs(self) -> list[str]:
        return [*super().outputs, "units"]

    @override
    def requests(self, input: dict[str, Any]) -> list[Request]:
        skill, goal = self.skill(input), self._goal(input)
        latest = {unit["task"]: unit for unit in _latest(input, self.round - 1)}
        return [
            Request(s["task"], f"editor:{goal.id}", [{"role": "user", "content":
                self._taxonomy.prompts.editor.format(
                    skill_name=skill.name, goal_name=goal.name, goal_instructions=goal.instructions,
                    text=latest[s["task"]]["passage"], instruction=latest[s["task"]]["instruction"],
                    suggestions=s["text"])}], Edit)
            for s in input.get("suggestions") or []
        ]

    def parse(self, text: str, request: Request) -> Any:
        """The base parse, then the echo and placeholder checks (`structure.check_reply`)."""
        edit = super().parse(text, request)
        for part in (edit.instruction, edit.text or ""):
            structure.check_reply(part, request, self._taxonomy)
        return edit

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        """Add the edited versions.

        An edit that breaks the skill's structure (options of a multiple-choice task, the API list of
        a tool-use task) is rejected and counted, and the task keeps its previous version
        (`structure.edit_problem`).
        """
        skill = self.skill(row)
        agent = skill.instruction_agent(row["instruction_agent"])
        goal = row["refinement_goals"][self.round - 1]
        latest = {unit["task"]: unit for unit in _latest(row, self.round - 1)}
        edited = []
        for task, edit in sorted(replies.items()):
            passage = edit.text or latest[task]["passage"]  # null: the passage stays
            if problem := structure.edit_problem(skill, agent, edit.instruction, passage):
                row.setdefault("failures", []).append(structure.failure(
                    self.stage, f"editor:{goal}", problem, edit.model_dump_json(), task))
                continue
            if skill.context_of(agent) == "tools":  # the API list in the form the first one has
                passage = json.dumps(structure.api_list(passage), indent=1, ensure_ascii=False)
            edited.append({"task": task, "round": self.round, "goal": goal,
                           "instruction": edit.instruction, "passage": passage,
                           "reference_answer": None, "response": None})
        row["units"] = [*row["units"], *edited]
        row["suggestions"] = []
