"""The E-step as a distilabel pipeline: sample k solutions per problem, score them, cap them.

    problems ─┬─ sample_solutions (k samples, T 0.7, top-k 40) ─ score_samples ─ keep_correct
              └─ greedy_solution  (1 sample, T 0: plain greedy)  ─ score_greedy

The greedy branch gives pass@1 as the paper reports it; the sampled branch gives the training
data (train split) and pass@k / majority vote (held-out split). Generations are grouped per
problem (one request of k samples, `SampleSolutions`), so capping needs no global step.
"""

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from distilabel.steps import LoadDataFromDicts, Step, StepInput
from pydantic import PrivateAttr

from steps.cluster import ClusterOptions, run_pipeline
from steps.engines import build_llm
from steps.llm_step import LLMStep, Request
from steps.pipeline import Pipeline
from steps.progress import watch
from steps.rest_em.problems import Problem
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.scoring import Scored, SolutionScorer
from steps.rest_em.selection import keep_correct

# The paper's sampling (section 5): temperature 0.7, top-K 40, and no repetition penalty, which
# llama.cpp applies by default (1.1) and which hurts arithmetic, where digits repeat.
PAPER_SAMPLING = {"temperature": 0.7, "top_k": 40, "repeat_penalty": 1.0}
# pass@1 as the paper reports it: plain greedy decoding, nothing that reshapes the distribution.
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}


class SampleSolutions(LLMStep):
    """k solutions per problem from its few-shot prompt, in one request (the prompt read once).

    Input columns: `problem_id`, `prompt` (chat messages). Output columns: `solution` (the k
    texts, None where the engine failed; one text for k = 1) and the base's `failures` (engine
    errors by reason, e.g. `context_overflow`), `tokens`, `calls`. An empty text is kept: it is a
    (wrong) sample, not a failure, so nothing is re-asked (`max_retries` 0).
    """

    stage: ClassVar[str] = "e_step"
    row_id: ClassVar[str] = "problem_id"
    max_retries: int = 0
    k: int = 1

    @property
    def inputs(self) -> list[str]:
        """The problem's id (seeding) and its prompt."""
        return ["problem_id", "prompt"]

    @property
    def outputs(self) -> list[str]:
        """The base's columns and `solution`."""
        return [*super().outputs, "solution"]

    def requests(self, row: dict[str, Any]) -> list[Request]:
        """One request for the k samples."""
        return [Request("solution", self.name, row["prompt"], num_generations=self.k)]

    def parse(self, text: str, request: Request) -> str:
        """Every text as it came, even an empty one."""
        return text

    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        """`solution`: the k texts (a list), or the one text (None when it failed)."""
        row["solution"] = replies.get("solution")


class ScoreSolutions(Step):
    """Extract and verify every solution of a row; one outcome per solution, never raises.

    A missing solution is `no_output` with the engine's reason (e.g. `context_overflow`) as its
    detail. `samples`: solutions per row, for a row whose request failed as a whole.

    With `progress_file`, appends one byte per scored row there: the main process's progress
    bar reads its size (steps run in other processes).
    """

    progress_file: str | None = None
    samples: int = 1
    _scorer: SolutionScorer | None = PrivateAttr(default=None)

    @property
    def inputs(self) -> list[str]:
        """The problem (JSON) and its solution(s)."""
        return ["problem", "solution"]

    @property
    def outputs(self) -> list[str]:
        """Per solution: outcome, extracted answer, detail."""
        return ["outcome", "extracted", "detail"]

    def load(self) -> None:
        """Make the scorer (verifiers start on first use)."""
        super().load()
        self._scorer = SolutionScorer()

    def unload(self) -> None:
        """Stop the verifiers' workers."""
        if self._scorer is not None:
            self._scorer.close()
        super().unload()

    def process(self, inputs: StepInput) -> Any:  # type: ignore[override]
        """Score every row's solutions."""
        assert self._scorer is not None
        for row in inputs:
            problem = Problem(**json.loads(row["problem"]))
            texts = row.get("solution")
            if not isinstance(texts, list):  # one text, or a row whose request failed as a whole
                texts = [texts] if texts is not None else [None] * self.samples
            # The sampler's failure records, one per missing text, in order: their reasons.
            reasons = iter([f["reason"] for f in row.get("failures") or []
                            if f["stage"] == SampleSolutions.stage])
            scored = [self._scorer(problem, text) if text is not None else
                      Scored("no_output", detail=next(reasons, "no_output")) for text in texts]
            row["outcome"] = [s.outcome for s in scored]
            row["extracted"] = [s.extracted for s in scored]
            row["detail"] = [s.detail for s in scored]
        if self.progress_file:
            with open(self.progress_file, "a") as progress:
                progress.write("." * len(inputs))
        yield inputs


class KeepCorrect(Step):
    """Indices of the solutions kept for training: at most `max_per_problem` correct ones."""

    max_per_problem: int = 10

    @property
    def inputs(self) -> list[str]:
        """The outcomes of a row's solutions."""
        return ["outcome"]

    @property
    def outputs(self) -> list[str]:
        """Indices of the kept solutions."""
        return ["kept"]

    def process(self, inputs: StepInput) -> Any:  # type: ignore[override]
        """Cap every row's correct solutions."""
        for row in inputs:
            row["kept"] = keep_correct([Scored(o) for o in row["outcome"]], self.max_per_problem)
        yield inputs


@dataclass
class ProblemResult:
    """One problem after the E-step: its samples, their scores, the kept ones, the greedy one.

    `output_tokens` counts the tokens of all its generations, sampled and greedy.
    """

    problem: Problem
    solutions: list[str | None]
    scored: list[Scored]
    kept: list[int]
    greedy: Scored
    output_tokens: int


@dataclass
class EStepResult:
    """Every problem's result, in input order, and the wall time of the E-step in seconds."""

    results: list[ProblemResult]
    seconds: float

    @property
    def samples(self) -> int:
        """Generations made: k sampled + 1 greedy per problem."""
        return sum(len(r.solutions) + 1 for r in self.results)  # k sampled + 1 greedy each


def _scored(row: dict[str, Any], count: int) -> list[Scored]:
    """A row's scores; a batch distilabel dropped (its outputs are None) counts as errors."""
    if row.get("outcome") is None:
        return [Scored("error", detail="scoring step failed for this batch")] * count
    return [Scored(o, e, d) for o, e, d in zip(row["outcome"], row["extracted"], row["detail"],
                                               strict=True)]


def _output_tokens(row: dict[str, Any] | None) -> int:
    """Tokens generated for a row (the `LLMStep` base's count)."""
    return int(((row or {}).get("tokens") or {}).get("output") or 0)


def run_estep(problems: list[Problem], engine: str, *, k: int, max_per_problem: int, seed: int,
              sampling: dict[str, Any] | None = None, max_new_tokens: int = 256,
              batch_size: int = 8, cluster: ClusterOptions | None = None) -> EStepResult:
    """Sample, score and cap `problems` with `engine`; results in the order of `problems`.

    Args:
        problems: the problems to sample for.
        engine: the engine spec (`steps.engines`) to sample with.
        k: samples per problem (sampled with `PAPER_SAMPLING` updated by `sampling`).
        max_per_problem: correct samples kept per problem at most.
        seed: the run seed; sampling is seeded per input.
        sampling: generation settings over `PAPER_SAMPLING` (the greedy branch uses `GREEDY`).
        max_new_tokens: the longest solution, in tokens.
        batch_size: problems per distilabel batch.
        cluster: the recipe's config, to run the pipeline on Ray (`steps.cluster.run_pipeline`).
        cluster: the recipe's config, to run the pipeline on Ray (`steps.cluster.run_pipeline`).
    """
    sampling = {**PAPER_SAMPLING, **(sampling or {})}
    threads = max(1, (os.cpu_count() or 2) // 2)  # the two branches share the CPU
    data = [{"problem_id": p.id, "problem": json.dumps(dataclasses.asdict(p)),
             "prompt": solution_prompt(p)} for p in problems]
    with tempfile.TemporaryDirectory(prefix="rest-em-cache-") as cache, \
            Pipeline(name="rest-em-estep", cache_dir=cache) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=batch_size)
        sample = SampleSolutions(
            name="sample_solutions", k=k, seed=seed, input_batch_size=batch_size,
            llm=build_llm(engine, n_threads=threads, max_new_tokens=max_new_tokens,
                          sequences=batch_size * k, prompts=[row["prompt"] for row in data],
                          **sampling))
        greedy = SampleSolutions(
            name="greedy_solution", seed=seed, input_batch_size=batch_size,
            llm=build_llm(engine, n_threads=threads, max_new_tokens=max_new_tokens,
                          sequences=batch_size, prompts=[row["prompt"] for row in data], **GREEDY))
        progress = Path(cache) / "scored.progress"
        progress.touch()
        score = ScoreSolutions(name="score_samples", input_batch_size=batch_size,
                               progress_file=str(progress), samples=k)
        score_greedy = ScoreSolutions(name="score_greedy", input_batch_size=batch_size)
        keep = KeepCorrect(name="keep_correct", max_per_problem=max_per_problem,
                           input_batch_size=batch_size)
        load >> [sample, greedy]
        sample >> score >> keep
        greedy >> score_greedy
        started = time.perf_counter()
        with watch(f"E-step: {len(problems)} problems × {k} samples", len(problems),
                   lambda: progress.stat().st_size):
            distiset = run_pipeline(pipeline, cluster or ClusterOptions())
        seconds = time.perf_counter() - started
    sampled_rows = {row["problem_id"]: row for row in distiset["keep_correct"]["train"]}
    greedy_rows = {row["problem_id"]: row for row in distiset["score_greedy"]["train"]}
    results = []
    for p in problems:
        row, greedy_row = sampled_rows.get(p.id), greedy_rows.get(p.id)
        solutions = row["solution"] if row else [None] * k
        results.append(ProblemResult(
            problem=p, solutions=solutions,
            scored=_scored(row, k) if row else [Scored("no_output")] * k,
            kept=(row or {}).get("kept") or [],
            greedy=_scored(greedy_row, 1)[0] if greedy_row else Scored("no_output"),
            output_tokens=_output_tokens(row) + _output_tokens(greedy_row)))
    return EStepResult(results, seconds)
