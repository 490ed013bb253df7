"""A Magpie run's options, checked and resolved before any pipeline starts.

`MagpieConfig` is what a user chooses (recorded with the run); `plan` resolves it (engines, the
chat template, steering domains, stops) and raises every UserError, in the caller's process.
"""

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from steps.cluster import ClusterOptions
from steps.engines import ENGINE_FORMS, EngineSpec
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
from steps.publish.scrub import portable
from steps.recipe_config import RecipeConfig, run_option
from steps.serving import ServingOptions


class MagpieConfig(RecipeConfig, ClusterOptions, ServingOptions):
    """Everything a Magpie run depends on (Xu et al. 2024, arXiv 2406.08464).

    Recorded (minus secrets) with every row; each field is a flag of `pipelines/magpie.py` and a
    recipe key.
    """

    recipe: ClassVar[str] = "magpie"
    caps_on_ray: ClassVar[bool] = False  # the last step reports tokens through a file
    flags: ClassVar[dict[str, str]] = {
        "domains": "--domain", "instruction.max_new_tokens": "--instruction-max-tokens",
        "response.max_new_tokens": "--response-max-tokens"}

    rows: int = Field(ge=1, description="conversations to make")
    turns: int = Field(default=1, ge=1, description="user/assistant turns per conversation")
    engine: str = Field("embedded", description="the aligned model that writes the instructions "
                        f"(and, by default, the responses): {ENGINE_FORMS}")
    response_engine: str | None = Field(None, description="another model for the responses "
                                        "(default: --engine)")
    template: str | None = Field(None, description="chat template override: a family name "
                                 "(llama3, chatml, qwen2, qwen2.5, phi3, gemma2, mistral), a "
                                 "tokenizer_config.json or a .jinja file")
    domains: list[str] | None = Field(None, description="steering domains from "
                                      "taxonomies/magpie/system_prompts.yaml; rows cycle through "
                                      "them (default: default)")
    instruction: Sampling = Field(INSTRUCTION_SAMPLING, description="instruction sampling")
    response: Sampling = Field(RESPONSE_SAMPLING, description="response sampling")
    newline_stop: bool = Field(True, description="stop instructions at the first newline "
                               "(Magpie's early stopping)")
    instructions_only: bool = Field(False, description="no responses: single-turn instruction "
                                    "sets")
    tag: bool = Field(False, description="tag task category, input quality and difficulty with "
                      "a schema-constrained judge")
    judge: str | None = Field(None, description="engine of the tagging judge (default: --engine)")
    detect_language: bool = Field(False, description="tag each row's language with lingua "
                                  "(offline)")
    languages: list[str] | None = Field(None, description="candidate ISO 639-1 codes for "
                                        "language detection, e.g. en,es,de (default: all)")
    reward_engine: str | None = Field(None, description="openai:MODEL@BASE_URL of a served "
                                      "reward model (default: no reward)")
    filter: str | None = Field(None, description="a Magpie release filter preset: "
                               "air-300k-filtered, pro-300k-filtered or later")
    keep_longest: int | None = Field(None, ge=0, description="keep the N longest responses "
                                     "(overrides the preset's N; 0: all)")
    seed: int = Field(0, description="the run seed (sampling is seeded per row)")
    batch_size: int = run_option(50, ge=1, description="rows per distilabel batch")
    threads: int | None = run_option(None, ge=1, description="llama.cpp threads per engine")

    @field_validator("filter")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        from steps.magpie.filters import presets  # reads the tag scales

        if name is not None and name not in presets():
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(presets())}")
        return name

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.instructions_only and self.turns > 1:
            raise UserError("--instructions-only makes single-turn instruction sets; drop --turns")
        return self

    @property
    def judge_engine(self) -> str | None:
        """The tagging judge's engine spec, when tagging: `judge`, else `engine`."""
        return (self.judge or self.engine) if self.tag else None


def _check_template_accepts(template: ChatTemplate, steering: Steering, domains: list[str],
                            turns: int) -> None:
    """Render every prompt shape once here.

    A template refusing one (Gemma has no system role) is then one clear error now rather than
    failed rows from a worker process.
    """
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
        """Whether the responses come from the instruction engine."""
        return self.responder == self.engine

    def params(self, config: MagpieConfig) -> dict[str, Any]:
        """The generation parameters recorded with every row (provenance, no secrets)."""
        return {
            "seed": config.seed,
            "turns": config.turns,
            "template": portable(self.template.origin),
            "template_family": self.template.family.name if self.template.family else None,
            "domains": self.domains,
            "instruction": {**config.instruction.model_dump(), "stop": self.instruction_stop},
            "response": None if config.instructions_only else {
                **config.response.model_dump(),
                "stop": self.response_stop if self.same_engine else "the response engine's own",
            },
            "response_engine": None if config.instructions_only else portable(self.responder.model_id),
            "judge": portable(self.judge.model_id) if self.judge else None,
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
        judge=EngineSpec.parse(config.judge_engine) if config.judge_engine else None,
        reward=RewardEndpoint.parse(config.reward_engine) if config.reward_engine else None,
        languages=iso_codes(config.languages) if config.languages else None,
    )
