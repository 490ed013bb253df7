"""A Magpie run's options, checked and resolved before any pipeline starts.

`MagpieConfig` is what a user chooses (recorded with the run); `plan` resolves it (engines, the
chat template, steering domains, stops) and raises every UserError, in the caller's process.
"""

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steps.engines import EngineSpec
from steps.errors import UserError
from steps.magpie.chat_template import ChatTemplate, resolve_template
from steps.magpie.language import iso_codes
from steps.magpie.reward import RewardEndpoint
from steps.magpie.sampling import (
    INSTRUCTION_SAMPLING,
    RESPONSE_SAMPLING,
    Sampling,
    end_of_turn_stops,
    instruction_stops,
)
from steps.magpie.steering import Steering, load_steering


class MagpieConfig(BaseModel):
    """Everything a Magpie run depends on (recorded, minus secrets, with every row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_rows: int = Field(ge=1)
    turns: int = Field(default=1, ge=1)
    batch_size: int = Field(default=50, ge=1)
    engine: str = "embedded"  # writes the instructions (and, by default, the responses)
    response_engine: str | None = None  # another model for the responses
    template: str | None = None  # chat template override (chat_template.resolve_template)
    domains: list[str] | None = None  # steering domains, rows cycle through them
    instruction: Sampling = INSTRUCTION_SAMPLING
    response: Sampling = RESPONSE_SAMPLING
    newline_stop: bool = True  # Magpie's early stopping of instructions at the first newline
    instructions_only: bool = False  # no responses (single turn): benchmarks, instruction sets
    judge: str | None = None  # engine that tags task category / quality / difficulty
    detect_language: bool = False
    languages: list[str] | None = None  # candidate languages for detection (default: all)
    reward_engine: str | None = None  # openai:MODEL@URL of a served reward model (reward.py)
    seed: int = 0
    n_threads: int | None = None  # llama.cpp threads per engine

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.instructions_only and self.turns > 1:
            raise UserError("--instructions-only makes single-turn instruction sets; drop --turns")
        return self


def _check_template_accepts(template: ChatTemplate, steering: Steering, domains: list[str],
                            turns: int) -> None:
    """Render every prompt shape once here, so that a template refusing one (Gemma has no
    system role) is one clear error now rather than failed rows from a worker process."""
    exchange = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    for domain in domains:
        for turn in range(1, turns + 1):
            system = steering.system_prompt(domain, turn)
            template.pre_query_prompt(
                [*([{"role": "system", "content": system}] if system else []),
                 *exchange * (turn - 1)])


@dataclass(frozen=True)
class MagpiePlan:
    """A config resolved and checked: every bad option fails here, in the caller's process."""

    engine: EngineSpec
    responder: EngineSpec
    template: ChatTemplate
    steering: Steering
    domains: list[str]
    instruction_stop: list[str]
    response_stop: list[str]
    judge: EngineSpec | None
    reward: RewardEndpoint | None
    languages: list[str] | None

    @property
    def same_engine(self) -> bool:
        return self.responder == self.engine

    def params(self, config: MagpieConfig) -> dict[str, Any]:
        """The generation parameters recorded with every row (provenance, no secrets)."""
        return {
            "seed": config.seed,
            "turns": config.turns,
            "template": self.template.origin,
            "template_family": self.template.family.name if self.template.family else None,
            "domains": self.domains,
            "instruction": {**config.instruction.model_dump(), "stop": self.instruction_stop},
            "response": None if config.instructions_only else {
                **config.response.model_dump(),
                "stop": self.response_stop if self.same_engine else "the response engine's own",
            },
            "response_engine": None if config.instructions_only else self.responder.model_id,
            "judge": self.judge.model_id if self.judge else None,
            "reward_model": self.reward.model if self.reward else None,
        }


def plan(config: MagpieConfig) -> MagpiePlan:
    """Resolve and check `config`."""
    engine = EngineSpec.parse(config.engine)
    template = resolve_template(engine, config.template)
    steering = load_steering()
    domains = steering.resolve(config.domains)
    _check_template_accepts(template, steering, domains, config.turns)
    return MagpiePlan(
        engine=engine,
        responder=EngineSpec.parse(config.response_engine or config.engine),
        template=template,
        steering=steering,
        domains=domains,
        instruction_stop=instruction_stops(template, config.newline_stop),
        response_stop=end_of_turn_stops(template),
        judge=EngineSpec.parse(config.judge) if config.judge else None,
        reward=RewardEndpoint.parse(config.reward_engine) if config.reward_engine else None,
        languages=iso_codes(config.languages) if config.languages else None,
    )
