"""The Magpie distilabel pipeline: conversations from nothing but the model's chat template.

    conversations → instruction_1 → response_1 → … → instruction_T → response_T
                  → [tagging] → [language] → [reward] → pack

`make_magpie_rows` is the one call other flows use (orca3_mix's `--magpie-share`).
"""

# No `from __future__ import annotations`: distilabel reads the `StepInput` hint of process()
# at run time and does not resolve string annotations.

import json
import tempfile
from pathlib import Path
from typing import Any, Self

from distilabel.pipeline import Pipeline
from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from steps.engines import EngineSpec, build_llm
from steps.errors import UserError
from steps.magpie.chat_template import ChatTemplate, resolve_template
from steps.magpie.language import DetectLanguage, iso_codes
from steps.magpie.reward import RewardEndpoint, ScoreReward
from steps.magpie.rows import MagpieRows, Provenance, conversation_rows
from steps.magpie.sampling import (
    INSTRUCTION_SAMPLING,
    RESPONSE_SAMPLING,
    Sampling,
    end_of_turn_stops,
    generation_kwargs,
    instruction_stops,
)
from steps.magpie.steering import Steering, load_steering
from steps.magpie.tagging import JUDGE_MAX_TOKENS, MagpieTagger
from steps.magpie.turns import MagpieConversations, MagpieInstruction, MagpieResponse


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


class PackConversations(Step):
    """Each conversation as one JSON string, with a progress bar.

    distilabel writes leaf outputs to parquet 50 rows at a time and reads the files back with the
    first file's schema, so a column that is all null in one file and text in another breaks the
    read; one string column cannot.
    """

    total: int
    _progress: Any = PrivateAttr(default=None)

    @property
    def inputs(self) -> StepColumns:
        return ["conversation_id"]

    @property
    def outputs(self) -> StepColumns:
        return ["conversation"]

    def load(self) -> None:
        super().load()
        from tqdm.auto import tqdm

        self._progress = tqdm(total=self.total, desc="magpie conversations", unit="conv")

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        self._progress.update(len(inputs))
        yield [{"conversation": json.dumps(row, ensure_ascii=False, default=str)}
               for row in inputs]


def _engine_llm(spec: EngineSpec, config: MagpieConfig, **generation: Any) -> Any:
    return build_llm(spec, n_threads=config.n_threads, **generation)


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


def build_pipeline(config: MagpieConfig, cache_dir: Path) -> tuple[Pipeline, dict[str, Any]]:
    """The pipeline and its generation parameters (provenance, recorded with every row)."""
    engine = EngineSpec.parse(config.engine)
    responder = EngineSpec.parse(config.response_engine or config.engine)
    template = resolve_template(engine, config.template)
    steering = load_steering()
    domains = steering.resolve(config.domains)
    _check_template_accepts(template, steering, domains, config.turns)
    instruction_stop = instruction_stops(template, config.newline_stop)
    response_stop = end_of_turn_stops(template)
    same_engine = responder == engine
    reward = RewardEndpoint.parse(config.reward_engine) if config.reward_engine else None
    judge = EngineSpec.parse(config.judge) if config.judge else None
    languages = iso_codes(config.languages) if config.languages else None
    params = {
        "seed": config.seed,
        "turns": config.turns,
        "template": template.origin,
        "template_family": template.family.name if template.family else None,
        "domains": domains,
        "instruction": {**config.instruction.model_dump(), "stop": instruction_stop},
        "response": None if config.instructions_only else {
            **config.response.model_dump(),
            "stop": response_stop if same_engine else "the response engine's own",
        },
        "response_engine": responder.model_id,
        "judge": judge.model_id if judge else None,
        "reward_model": reward.model if reward else None,
    }
    with Pipeline(name="magpie", cache_dir=cache_dir) as pipeline:
        last: Any = MagpieConversations(name="conversations", num_rows=config.num_rows,
                                        domains=domains, batch_size=config.batch_size)
        for turn in range(1, config.turns + 1):
            instruction = MagpieInstruction(
                name=f"instruction_{turn}",
                llm=_engine_llm(engine, config, **generation_kwargs(
                    engine, config.instruction, instruction_stop)),
                template=template,
                system_prompts={d: steering.system_prompt(d, turn) for d in domains},
                seed=config.seed,
                input_batch_size=config.batch_size,
            )
            last = last >> instruction
            if config.instructions_only:
                break
            response = MagpieResponse(
                name=f"response_{turn}",
                llm=_engine_llm(responder, config, **generation_kwargs(
                    responder, config.response, response_stop if same_engine else [])),
                template=template if same_engine else None,
                seed=config.seed,
                input_batch_size=config.batch_size,
            )
            last = last >> response
        if judge:
            tagger = MagpieTagger(
                name="tagging", seed=config.seed, input_batch_size=config.batch_size,
                llm=_engine_llm(judge, config, temperature=0.0, max_new_tokens=JUDGE_MAX_TOKENS),
            )
            last = last >> tagger
        if config.detect_language:
            last = last >> DetectLanguage(name="language", languages=languages,
                                          input_batch_size=config.batch_size)
        if reward:
            last = last >> ScoreReward(name="reward", endpoint=reward,
                                       input_batch_size=config.batch_size)
        last >> PackConversations(name="pack", total=config.num_rows,
                                  input_batch_size=config.batch_size)
    return pipeline, params


def run_magpie(config: MagpieConfig, run_id: str, cache_dir: Path | None = None) -> MagpieRows:
    """Run the pipeline; `cache_dir` (default: a temporary folder) holds distilabel's cache."""
    with tempfile.TemporaryDirectory(prefix="magpie-") as scratch:
        pipeline, params = build_pipeline(config, Path(cache_dir or scratch))
        distiset = pipeline.run(use_cache=False)
        records = [json.loads(row["conversation"]) for row in distiset["default"]["train"]]
    engine = EngineSpec.parse(config.engine)
    responder = EngineSpec.parse(config.response_engine or config.engine)
    provenance = Provenance(
        run_id=run_id,
        instruction_model=engine.model_id,
        response_model=None if config.instructions_only else responder.model_id,
        generation_params=params,
    )
    return conversation_rows(records, provenance)


def make_magpie_rows(n: int, engine: str = "embedded", turns: int = 1, seed: int = 0,
                     run_id: str = "magpie", **options: Any) -> MagpieRows:
    """`n` Magpie conversations as rows of config "magpie" (flow "magpie"), failures counted.

    `options` are any other MagpieConfig fields (batch_size, domains, judge, response, …).
    """
    config = MagpieConfig(num_rows=n, engine=engine, turns=turns, seed=seed, **options)
    return run_magpie(config, run_id)
