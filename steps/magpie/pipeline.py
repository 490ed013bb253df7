"""The Magpie distilabel pipeline: conversations from nothing but the model's chat template.

    conversations → instruction_1 → response_1 → … → instruction_T → response_T
                  → [tagging] → [language] → [reward] → pack

The pipeline runs in a fresh Python process (run_magpie says why). `make_magpie_rows` is the one
call other flows use (orca3_mix's `--magpie-share`).
"""

import dataclasses
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import PrivateAttr
from tqdm.auto import tqdm
from typing_extensions import override

from steps.budget import append_ledger
from steps.cluster import run_pipeline
from steps.engines import EngineSpec, build_llm
from steps.llms.concurrency import ServerSlots, items_per_batch
from steps.magpie.checkpoints import ConversationCheckpoints
from steps.magpie.config import MagpieConfig, plan
from steps.magpie.language import DetectLanguage
from steps.magpie.reward import ScoreReward
from steps.magpie.rows import MagpieRows, Provenance, conversation_rows
from steps.magpie.sampling import generation_kwargs
from steps.magpie.tagging import JUDGE_MAX_TOKENS, MagpieTagger
from steps.magpie.turns import MagpieConversations, MagpieInstruction, MagpieResponse
from steps.pipeline import Pipeline
from steps.publish.scrub import portable


class PackConversations(Step):
    """Each conversation as one JSON string, with a progress bar.

    distilabel writes leaf outputs to parquet 50 rows at a time and reads the files back with the
    first file's schema, so a column that is all null in one file and text in another breaks the
    read; one string column cannot. With `ledger_file`, every finished conversation is also
    appended there (the try's checkpoint and token ledger: steps.magpie.checkpoints).
    """

    total: int
    ledger_file: str | None = None
    _progress: Any = PrivateAttr(default=None)

    @property
    @override
    def inputs(self) -> StepColumns:
        return ["conversation_id"]

    @property
    @override
    def outputs(self) -> StepColumns:
        return ["conversation"]

    @override
    def load(self) -> None:
        super().load()
        self._progress = tqdm(total=self.total, desc="magpie conversations", unit="conv")

    @override
    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        self._progress.update(len(inputs))
        if self.ledger_file:
            append_ledger(self.ledger_file, inputs)
        yield [{"conversation": json.dumps(row, ensure_ascii=False, default=str)}
               for row in inputs]


def _specs(config: MagpieConfig) -> list[str]:
    """The engine specs the run talks to (the reward model's endpoint is not an LLM engine)."""
    return [s for s in (config.engine, config.response_engine, config.judge_engine) if s]


@dataclass(frozen=True)
class MagpieJob:
    """What one try makes: conversations `todo` (ids; None: all) of `config`.

    `ledger`: the file the try appends its finished conversations to (None: none, e.g. on Ray);
    `spent`: tokens ({input, output}) earlier tries' done conversations used, counted against
    the config's cap.
    """

    config: MagpieConfig
    todo: list[int] | None = None
    ledger: str | None = None
    spent: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The job as JSON (for the pipeline's process)."""
        return json.dumps({"config": self.config.model_dump(mode="json"), "todo": self.todo,
                           "ledger": self.ledger, "spent": self.spent})

    @classmethod
    def from_json(cls, text: str) -> "MagpieJob":
        """The job `to_json` wrote."""
        job = json.loads(text)
        return cls(MagpieConfig.model_validate(job.pop("config")), **job)


def build_pipeline(job: MagpieJob, cache_dir: Path, slots: ServerSlots) -> Pipeline:
    """The distilabel pipeline of `job`; distilabel keeps its cache in `cache_dir`.

    Server engines share `slots` (at most --max-concurrency requests in flight per server, all
    steps together) and take --request-timeout / --request-retries; batches are raised to
    --max-concurrency so that one step can fill a server (steps.llms.concurrency).
    """
    config = job.config
    budget = config.budget
    resolved = plan(config)
    batch_size = items_per_batch(config.batch_size, slots.max_concurrency, _specs(config))

    def engine_llm(spec: EngineSpec, **generation: Any) -> Any:
        return slots.serve(build_llm(spec, n_threads=config.threads, **generation), spec,
                           config.request_timeout, config.request_retries)

    with Pipeline(name="magpie", cache_dir=cache_dir) as pipeline:
        last: Any = MagpieConversations(
            name="conversations", num_rows=config.rows, todo=job.todo, domains=resolved.domains,
            batch_size=batch_size, ledger_file=job.ledger, spent=job.spent,
            budget=budget.step_field())
        for turn in range(1, config.turns + 1):
            instruction = MagpieInstruction(
                name=f"instruction_{turn}",
                llm=engine_llm(resolved.engine, **generation_kwargs(
                    resolved.engine, config.instruction, resolved.instruction_stop)),
                template=resolved.template,
                system_prompts={d: resolved.steering.system_prompt(d, turn)
                                for d in resolved.domains},
                seed=config.seed,
                input_batch_size=batch_size,
            )
            last = last >> instruction
            if config.instructions_only:
                break
            response = MagpieResponse(
                name=f"response_{turn}",
                llm=engine_llm(resolved.responder, **generation_kwargs(
                    resolved.responder, config.response,
                    resolved.response_stop if resolved.same_engine else [])),
                template=resolved.template if resolved.same_engine else None,
                seed=config.seed,
                input_batch_size=batch_size,
            )
            last = last >> response
        if resolved.judge:
            tagger = MagpieTagger(
                name="tagging", seed=config.seed, input_batch_size=batch_size,
                llm=engine_llm(resolved.judge, temperature=0.0, max_new_tokens=JUDGE_MAX_TOKENS),
            )
            last = last >> tagger
        if config.detect_language:
            last = last >> DetectLanguage(name="language", languages=resolved.languages,
                                          input_batch_size=batch_size)
        if resolved.reward:
            last = last >> ScoreReward(name="reward", endpoint=resolved.reward,
                                       input_batch_size=batch_size)
        last >> PackConversations(name="pack", total=config.rows if job.todo is None
                                  else len(job.todo), ledger_file=job.ledger,
                                  input_batch_size=batch_size)
    return pipeline


def run_here(job_file: str, result_file: str, cache_dir: str) -> None:
    """The fresh interpreter's side of run_magpie: run the pipeline, write its conversations."""
    job = MagpieJob.from_json(Path(job_file).read_text(encoding="utf-8"))
    config = job.config
    # One limit per server for every step process; Ray actors on other nodes cannot share this
    # process's slots (a Manager).
    with ServerSlots([] if config.ray else _specs(config), config.concurrency(*_specs(config))
                     ) as slots:
        distiset = run_pipeline(build_pipeline(job, Path(cache_dir), slots), config,
                                n_threads=config.threads)
    records = [json.loads(row["conversation"]) for row in distiset["default"]["train"]]
    Path(result_file).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def run_magpie(config: MagpieConfig, run_id: str, checkpoints: Path | None = None) -> MagpieRows:
    """Run the pipeline and turn its conversations into rows.

    With `checkpoints` (a folder; steps.magpie.checkpoints) the conversations earlier tries
    finished are kept and only the others are made, each try's appended there as its batches
    end; with a cap (`--max-tokens-total`, `--max-cost`) feeding stops once the done
    conversations' tokens reach it, and the rows' `not_done` counts the conversations not made.

    The pipeline runs in a fresh Python process: distilabel forks its workers from the process
    that runs it, and a fork of a process that has already run llama.cpp hangs in OpenMP (any
    caller that generated something in-process, e.g. a test session, or orca3_mix after an
    in-process step). Under Ray (`config.ray`) it runs here: the steps run in Ray's actors, and
    the driver forks nothing. Options are checked here first, so bad input is still one UserError.
    """
    params = plan(config).params(config)
    done = ConversationCheckpoints(checkpoints) if checkpoints else None
    records = list(done.done.values()) if done else []
    job = MagpieJob(config) if done is None else MagpieJob(
        config, todo=[i for i in range(config.rows) if i not in done.done],
        ledger=str(done.next_ledger()), spent=done.tokens)
    if job.todo != []:
        records += _run_job(job)
    provenance = Provenance(
        run_id=run_id,
        instruction_model=portable(EngineSpec.parse(config.engine).model_id),
        response_model=params["response_engine"],
        generation_params=params,
    )
    made = conversation_rows(records, provenance)
    return dataclasses.replace(made, not_done=config.rows - len(records))


def _run_job(job: MagpieJob) -> list[dict[str, Any]]:
    """The conversation records the pipeline of `job` made (see run_magpie for the process)."""
    with tempfile.TemporaryDirectory(prefix="magpie-") as work:
        result, job_file = Path(work) / "conversations.json", Path(work) / "job.json"
        job_file.write_text(job.to_json(), encoding="utf-8")
        child = ("import sys; from steps.magpie.pipeline import run_here; "
                 "run_here(*sys.argv[1:])")
        if job.config.ray:
            run_here(str(job_file), str(result), work)
            done = subprocess.CompletedProcess([], 0)
        else:
            done = subprocess.run([sys.executable, "-c", child, str(job_file), str(result), work],
                                  check=False)
        if done.returncode != 0 or not result.is_file():
            raise RuntimeError(f"the magpie pipeline process failed (exit {done.returncode}); "
                               "its log is above")
        return json.loads(result.read_text(encoding="utf-8"))


def make_magpie_rows(n: int, engine: str = "embedded", turns: int = 1, seed: int = 0,
                     run_id: str = "magpie", **options: Any) -> MagpieRows:
    """`n` Magpie conversations as rows of config "magpie" (flow "magpie"), failures counted.

    `options` are any other MagpieConfig fields (batch_size, domains, judge, response, …).
    """
    config = MagpieConfig(rows=n, engine=engine, turns=turns, seed=seed, **options)
    return run_magpie(config, run_id)
