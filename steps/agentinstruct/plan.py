"""The work plan: which seed goes to which skill and agents, decided up front from `--seed`.

Planning before generation makes a run reproducible and resumable: every work item has a stable
id, so a restarted run skips the items already written and redoes only the rest.
"""

from __future__ import annotations

import math
import random
from typing import Any

from steps.errors import UserError
from steps.rows import stable_id
from steps.seeds import Seed
from steps.taxonomy import Skill


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
    rows_per_item: int,
    refinement_rounds: int,
) -> list[dict[str, Any]]:
    """Work items for every skill: one seed, one transformation agent (picked at random, as in
    the paper), one instruction agent allowed after it, and a refinement goal per round."""
    items = []
    for skill in skills:
        quota = quotas(rows, weights)[skill.id]
        eligible = [s for s in seeds if s.kind in skill.seed_kinds] or seeds
        rng = random.Random(f"{seed}:{skill.id}")
        order = rng.sample(eligible, len(eligible))
        for index in range(math.ceil(quota / rows_per_item)):
            doc = order[index % len(order)]
            transformation = rng.choice(skill.transformation_agents)
            instruction = rng.choice(skill.allowed_instruction_agents(transformation.id))
            goals = [rng.choice(skill.refinement_goals).id for _ in range(refinement_rounds)]
            items.append({
                "item_id": stable_id(seed, skill.id, index, doc.id, transformation.id,
                                     instruction.id, goals),
                "skill": skill.id,
                "config": skill.split,
                "quota": quota,
                "item_index": index,
                "seed_id": doc.id,
                "seed_source": doc.source,
                "seed_text": doc.text,
                "transformation_agent": transformation.id,
                "instruction_agent": instruction.id,
                "refinement_goals": goals,
            })
    return items
