"""The work plan: which seed goes to which skill and agents, decided up front from `--seed`.

Planning before generation makes a run reproducible and resumable: every work item has a stable
id, so a restarted run skips the items already written and redoes only the rest.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

from steps.errors import UserError
from steps.llms.tokenizer import Tokenize
from steps.rows import stable_id
from steps.seeds import Seed
from steps.taxonomy import PromptFrames, Skill


def parse_mix(spec: str | None, skills: list[Skill]) -> dict[str, float]:
    """`--mix rc=2,code_=0.5` as weights per skill id (unnamed skills weigh 1).

    Raises:
        UserError: a name is not a selected skill or is given twice (by id or split name), or a
            weight is not a finite non-negative number, or all weights are zero.
    """
    weights = {skill.id: 1.0 for skill in skills}
    by_name = {name: s.id for s in skills for name in (s.id, s.split)}
    named: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = (text.strip() for text in part.partition("="))
        if name not in by_name:
            raise UserError(f"--mix: {name!r} is not one of the selected skills")
        if by_name[name] in named:
            raise UserError(f"--mix: {name!r} and {named[by_name[name]]!r} name the same skill; "
                            "give its weight once")
        named[by_name[name]] = name
        try:
            weight = float(value)
        except ValueError:
            raise UserError(f"--mix: weight of {name!r} must be a number, not {value!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise UserError(f"--mix: weight of {name!r} must be a finite number ≥ 0, not {value!r}")
        weights[by_name[name]] = weight
    if not sum(weights.values()):
        raise UserError("--mix: weights must not all be zero")
    return weights


def quotas(rows: int, weights: dict[str, float]) -> dict[str, int]:
    """Rows per skill in proportion to the weights (largest remainder, ties by skill id)."""
    total = sum(weights.values())
    exact = {k: rows * w / total for k, w in weights.items()}
    result = {k: math.floor(v) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - result[k]), k))
    for key in by_remainder[: rows - sum(result.values())]:
        result[key] += 1
    return result


def plan_items(
    skills: list[Skill],
    seeds: list[Seed],
    rows: int,
    weights: dict[str, float],
    seed: int,
    tasks_per_item: int,
    refinement_rounds: int,
) -> list[dict[str, Any]]:
    """Work items for every skill.

    One seed, one transformation agent (picked at random, as in the paper), one instruction agent allowed
    after it, and a refinement goal per round.

    The plan asks for exactly the work the quota needs: a task gives one row per version (the
    seed instruction and one per refinement round), so a skill gets ceil(quota / versions) tasks,
    `tasks_per_item` to an item; an item asks for `tasks` tasks and refines the first
    `refined[r]` of them in round r + 1, the last task only as often as the quota still needs.
    When every call succeeds the skill gets its quota; what fails is counted, never topped up by
    extra work that the quota would throw away.
    """
    versions = refinement_rounds + 1
    skill_quotas = quotas(rows, weights)
    items = []
    for skill in skills:
        quota = skill_quotas[skill.id]
        tasks_needed = math.ceil(quota / versions)
        last_task_versions = quota - (tasks_needed - 1) * versions  # 1 … versions
        item_count = math.ceil(tasks_needed / tasks_per_item)
        eligible = [s for s in seeds if s.kind in skill.seed_kinds] or seeds
        rng = random.Random(f"{seed}:{skill.id}")
        order = rng.sample(eligible, len(eligible))
        for index in range(item_count):
            tasks = min(tasks_per_item, tasks_needed - index * tasks_per_item)
            last = index == item_count - 1
            refined = [tasks - (last and r + 2 > last_task_versions) for r in range(refinement_rounds)]
            doc = order[index % len(order)]
            transformation = rng.choice(skill.transformation_agents)
            instruction = rng.choice(skill.allowed_instruction_agents(transformation.id))
            goals = [rng.choice(skill.refinement_goals).id for _ in range(refinement_rounds)]
            items.append({
                "item_id": stable_id(seed, skill.id, index, doc.id, transformation.id,
                                     instruction.id, goals, tasks, refined),
                "skill": skill.id,
                "config": skill.split,
                "quota": quota,
                "item_index": index,
                "seed_id": doc.id,
                "seed_source": doc.source,
                "seed_text": doc.text,
                "transformation_agent": transformation.id,
                "instruction_agent": instruction.id,
                "tasks": tasks,
                "refined": refined,
                "refinement_goals": goals,
            })
    return items


# Role markers of a chat template plus a default system turn (SmolLM2's template adds one).
CHAT_TEMPLATE_TOKENS = 64


def seed_token_budget(
    skills: list[Skill],
    prompts: PromptFrames,
    tokenize: Tokenize,
    context_tokens: int,
    agent_max_tokens: int,
    teacher_max_tokens: int,
    refinement_rounds: int,
) -> int:
    """The most tokens a seed may have so that every prompt it reaches, with its reply, fits.

    The engine's context window bounds prompt plus reply (llama.cpp refuses a longer prompt
    outright). A seed is the source of the transformation prompt; an identity agent (the seed copied
    unchanged, AgentInstruct paper §2.1, reading comprehension) makes it the passage of every later
    prompt too: the instruction agent's, the Suggester's and Editor's (beside a task and the
    suggestions) and, where the skill shows the passage, the teacher's and the follow-up agent's
    (beside the conversation so far). Every reply and every task is bounded by its engine's max
    tokens; prompt frames are counted with the engine's tokenizer. Feed the result to
    `steps.seeds.fit_seeds`.

    Returns:
        The budget in tokens; below 1 when the context cannot hold a seed at all.
    """
    def frame(template: str, **fields: Any) -> int:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        return len(tokenize(template.format(**{**dict.fromkeys(names, ""), **fields})))

    agent, teacher = agent_max_tokens, teacher_max_tokens
    need = 0
    for skill in skills:
        about = {"skill_name": skill.name, "skill_description": skill.description}
        for t in skill.transformation_agents:
            if not t.identity:
                need = max(need, frame(t.prompt or prompts.transformation, agent_name=t.name,
                                       agent_instructions=t.instructions, **about) + agent)
        if not any(t.identity for t in skill.transformation_agents):
            continue  # the passage is a transformation reply, bounded by the agent's max tokens
        for a in skill.instruction_agents:
            need = max(need, frame(a.prompt or prompts.instruction[a.output], agent_name=a.name,
                                   agent_instructions=a.instructions, **about) + agent)
        if refinement_rounds:
            for goal in skill.refinement_goals:
                refine = {"goal_name": goal.name, "goal_instructions": goal.instructions, **about}
                need = max(need, frame(prompts.suggester, **refine) + 2 * agent,  # task, reply
                           frame(prompts.editor, **refine) + 3 * agent)  # task, suggestions, reply
        if any(skill.context_of(a) != "none" for a in skill.instruction_agents):
            tools = frame(prompts.tools_system) if skill.context == "tools" else 0
            # the conversation: tasks and follow-ups (agent replies), answers (teacher replies)
            need = max(need, tools + skill.turns * (agent + teacher))
            if skill.turns > 1:
                need = max(need, frame(prompts.follow_up, **about)
                           + (skill.turns - 1) * (agent + teacher) + agent)
    return context_tokens - need - CHAT_TEMPLATE_TOKENS
