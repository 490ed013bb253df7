"""The AgentInstruct taxonomy as data: YAML files in `taxonomies/agentinstruct/`, one per skill.

Adding a skill or an agent means adding YAML. Every file is validated on load; a malformed one
fails with one line naming the file and the key (`UserError`). Prompt frames shared by all skills
live in `_prompts.yaml`; an agent may override its frame with its own `prompt`.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steps import DATA_ROOT
from steps.errors import UserError

TAXONOMY_DIR = DATA_ROOT / "taxonomies" / "agentinstruct"

# How the passage reaches the final user turn: inside it, not at all, or as the tool list.
Context = Literal["passage", "none", "tools"]
# What an instruction agent returns (each has a pydantic model in steps/agentinstruct/outputs.py).
InstructionOutput = Literal["instructions", "questions", "tool_requests"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformationAgent(_Strict):
    """Flow 1: rewrites a seed into an intermediate text suited to the skill."""

    id: str
    name: str
    instructions: str = ""
    output: Literal["text", "apis"] = "text"
    identity: bool = False  # copy the seed unchanged (the paper's identity agent), no LLM call
    question_types: list[str] | None = None  # routing: the instruction agents allowed after it
    prompt: str | None = None  # full frame override, same placeholders as _prompts.yaml


class InstructionAgent(_Strict):
    """Flow 2: one task/question type, i.e. one subcategory of the skill."""

    id: str
    name: str
    instructions: str
    output: InstructionOutput = "instructions"
    context: Context | None = None  # None: the skill's default
    prompt: str | None = None
    # Structure its tasks must keep through every stage (steps/agentinstruct/structure.py):
    multiple_choice: bool | None = None  # questions with lettered options; None: the skill's
    tool_call: Literal["required", "none"] | None = None  # tool requests: a call, or none

    @model_validator(mode="after")
    def _check_structure(self) -> InstructionAgent:
        if self.multiple_choice and self.output != "questions":
            raise ValueError("multiple_choice: only agents with output `questions` have options")
        if self.tool_call and self.output != "tool_requests":
            raise ValueError("tool_call: only agents with output `tool_requests` make calls")
        return self


class RefinementGoal(_Strict):
    """Flow 3: what the Suggester aims for when it proposes edits."""

    id: str
    name: str
    instructions: str


class Skill(_Strict):
    """One skill of the taxonomy: its agents, refinement goals and dataset split."""

    id: str
    name: str
    split: str  # the orca-agentinstruct-1M-v1 split name, used as the dataset config
    description: str
    seed_kinds: list[Literal["text", "code"]] = ["text", "code"]
    context: Context = "passage"
    turns: int = Field(default=1, ge=1)  # user turns per conversation; >1 adds follow-up turns
    multiple_choice: bool = False  # every question agent's tasks have lettered options
    transformation_agents: list[TransformationAgent] = Field(min_length=1)
    instruction_agents: list[InstructionAgent] = Field(min_length=1)
    refinement_goals: list[RefinementGoal] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> Skill:
        for kind in ("transformation_agents", "instruction_agents", "refinement_goals"):
            ids = [item.id for item in getattr(self, kind)]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate id {dupes[0]!r}")
        known = {agent.id for agent in self.instruction_agents}
        for i, agent in enumerate(self.transformation_agents):
            for qtype in agent.question_types or []:
                if qtype not in known:
                    raise ValueError(
                        f"transformation_agents.{i}.question_types: unknown instruction agent "
                        f"{qtype!r}"
                    )
        return self

    def transformation_agent(self, agent_id: str) -> TransformationAgent:
        """The transformation agent `agent_id` (StopIteration if unknown)."""
        return next(a for a in self.transformation_agents if a.id == agent_id)

    def instruction_agent(self, agent_id: str) -> InstructionAgent:
        """The instruction agent `agent_id` (StopIteration if unknown)."""
        return next(a for a in self.instruction_agents if a.id == agent_id)

    def refinement_goal(self, goal_id: str) -> RefinementGoal:
        """The refinement goal `goal_id` (StopIteration if unknown)."""
        return next(g for g in self.refinement_goals if g.id == goal_id)

    def allowed_instruction_agents(self, transformation_agent_id: str) -> list[InstructionAgent]:
        """The question types that may follow this transformation agent (the paper's routing)."""
        allowed = self.transformation_agent(transformation_agent_id).question_types
        return [a for a in self.instruction_agents if allowed is None or a.id in allowed]

    def context_of(self, agent: InstructionAgent) -> Context:
        """What the student sees with the agent's tasks: the agent's context, else the skill's."""
        return agent.context or self.context

    def is_multiple_choice(self, agent: InstructionAgent) -> bool:
        """Whether the agent's tasks must carry lettered options (and an answer among them)."""
        if agent.multiple_choice is not None:
            return agent.multiple_choice
        return self.multiple_choice and agent.output == "questions"


class PromptFrames(_Strict):
    """Prompt templates shared by all skills (str.format placeholders, see _prompts.yaml)."""

    transformation: str
    instruction: dict[InstructionOutput, str]
    suggester: str
    editor: str
    follow_up: str
    tools_system: str  # the system turn of tool-use rows: {apis} is the API list as JSON


class Taxonomy(BaseModel):
    """The loaded taxonomy: skills, prompt frames and a content hash."""

    model_config = ConfigDict(frozen=True)

    skills: dict[str, Skill]
    prompts: PromptFrames
    version: str  # content hash of every file, recorded with each run

    def skill(self, skill_id: str) -> Skill:
        """The skill `skill_id`.

        Raises:
            UserError: unknown skill (`--skills`).
        """
        if skill_id not in self.skills:
            raise UserError(
                f"--skills: unknown skill {skill_id!r}; known: {', '.join(sorted(self.skills))}"
            )
        return self.skills[skill_id]

    @cached_property
    def by_split(self) -> dict[str, Skill]:
        """The skills by split name."""
        return {skill.split: skill for skill in self.skills.values()}

    def resolve(self, names: list[str] | None) -> list[Skill]:
        """Skills by id or split name (e.g. `reading_comprehension` or `rc`); None means all.

        A skill named twice (`rc,reading_comprehension`) is planned once, in the order first named;
        blanks around names are ignored.

        Raises:
            UserError: a name is neither a skill id nor a split name, or no name is given.
        """
        names = [name.strip() for name in names or [] if name.strip()]
        if not names:
            return [self.skills[k] for k in sorted(self.skills)]
        skills = [self.by_split[n] if n in self.by_split else self.skill(n) for n in names]
        return list({skill.id: skill for skill in skills}.values())

    @property
    def subcategory_count(self) -> int:
        """Instruction agents (the paper's subcategories) over all skills."""
        return sum(len(s.instruction_agents) for s in self.skills.values())


def first_error(error: ValidationError) -> str:
    """The first error of a ValidationError as `location: message`."""
    err = error.errors()[0]
    message = err["msg"].removeprefix("Value error, ")  # our validators name their own key
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {message}" if where else message


def read_yaml(path: Path) -> object:
    """The YAML document at `path`.

    Raises:
        UserError: not valid YAML or not UTF-8 (with the line when known).
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise UserError(f"{path}: not valid YAML{at}: {getattr(error, 'problem', error)}") from None


def load_taxonomy(directory: Path = TAXONOMY_DIR) -> Taxonomy:
    """Load and validate every skill file; the first problem found is reported as one line."""
    if not directory.is_dir():
        raise UserError(f"--taxonomy {directory}: taxonomy folder not found")
    digest = hashlib.sha256()
    prompts_path = directory / "_prompts.yaml"
    files = sorted(p for p in directory.glob("*.yaml") if not p.name.startswith("_"))
    if not files:
        raise UserError(f"{directory}: no skill files (*.yaml)")
    skills: dict[str, Skill] = {}
    for path in [prompts_path, *files]:
        if not path.exists():
            raise UserError(f"{path}: missing (shared prompt frames)")
        digest.update(path.name.encode() + path.read_bytes())
    try:
        prompts = PromptFrames.model_validate(read_yaml(prompts_path))
    except ValidationError as error:
        raise UserError(f"{prompts_path}: {first_error(error)}") from None
    for path in files:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of skill fields at the top level")
        try:
            skill = Skill.model_validate({"id": path.stem, **data})
        except ValidationError as error:
            raise UserError(f"{path}: {first_error(error)}") from None
        skills[skill.id] = skill
    splits = [s.split for s in skills.values()]
    for split in splits:
        if splits.count(split) > 1:
            raise UserError(f"{directory}: split {split!r} is used by more than one skill")
    return Taxonomy(skills=skills, prompts=prompts, version=digest.hexdigest()[:12])
