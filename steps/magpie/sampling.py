"""Sampling for the two halves of a Magpie turn, which want opposite settings.

Instructions are sampled hot (T=1.0, top-p=1.0, no top-k, no repetition penalty) for diversity
and stop at the model's end-of-turn tokens, Magpie's extra stops and, by default, the first
newline; responses are greedy with their own token budget and stop at end-of-turn tokens only.
Settings from Magpie's generation scripts (magpie-align/magpie `exp/gen_ins.py`, `scripts/`).
distilabel 1.5.3's MagpieGenerator uses one set of generation settings for both halves.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from steps.engines import EngineSpec
from steps.magpie.chat_template import ChatTemplate


class Sampling(BaseModel):
    """One half's sampling settings: temperature, top-p, max new tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(ge=1)


INSTRUCTION_SAMPLING = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=2048)
RESPONSE_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=4096)


def end_of_turn_stops(template: ChatTemplate) -> list[str]:
    """The family's end-of-turn/role strings and the template's EOS.

    For a template of no known family, its EOS and the header of the next user turn.
    """
    family = template.family
    stops = list(family.stop) if family else [template.user_header.strip()]
    return _unique([*stops, template.eos_token])


def instruction_stops(template: ChatTemplate, newline: bool = True) -> list[str]:
    """Stops of the instruction half: end-of-turn stops, the family's extras, a newline (early stop)."""
    family = template.family
    extra = family.instruction_stop if family else []
    return _unique([*end_of_turn_stops(template), *extra, *(["\n"] if newline else [])])


def generation_kwargs(engine: EngineSpec, sampling: Sampling, stop: list[str]) -> dict[str, Any]:
    """`build_llm` generation kwargs.

    Magpie samples with neither top-k nor a repetition penalty (magpie-align/magpie
    `exp/gen_ins.py`), so the engine's own sampler defaults are switched off where it has any.
    """
    return sampling.model_dump() | {"stop": stop} | engine.engine_kind.neutral_sampling


def _unique(items: list[str]) -> list[str]:
    return [item for item in dict.fromkeys(items) if item]
