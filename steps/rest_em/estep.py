"""The E-step as a distilabel pipeline: sample k solutions per problem, score them, cap them.

    problems ─┬─ sample_solutions (k samples, T 0.7, top-k 40) ─ score_samples ─ keep_correct
              └─ greedy_solution  (1 sample, T 0: plain greedy)  ─ score_greedy

The greedy branch gives pass@1 as the paper reports it; the sampled branch gives the training
data (train split) and pass@k / majority vote (held-out split). Generations are grouped per
problem (one request of k samples, `SampleSolutions`), so capping needs no global step.

Server engines of both branches share one limit of requests in flight per server
(`--max-concurrency`, steps.llms.concurrency). With a token or cost cap (`--max-tokens-total`,
`--max-cost`) the problems stop being fed once the E-steps' tokens reach it; the problems not
fed are reported as not done (ReST-EM keeps no checkpoints: a rerun starts over).
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
from distilabel.typing import GeneratorStepOutput
from pydantic import PrivateAttr

from steps.budget import FeedWithinBudget, append_ledger, ledger_tokens, read_ledger
from steps.cluster import ClusterOptions, run_pipeline
from steps.engines import build_llm
from steps.estimate import TokenBudget
from steps.llm_step import LLMStep, Request
from steps.llms.concurrency import ServerSlots, items_per_batch
from steps.pipeline import Pipeline
from steps.progress import watch
from steps.rest_em.problems import Problem
from steps.rest_em.prompts import solution_prompt
from steps.rest_em.scoring import Scored, SolutionScorer
from steps.rest_em.selection import keep_correct
from steps.serving import ServingOptions

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
    bar reads its size (steps run in other processes). With `ledger_file`, appends one JSON line
    per row there: its `problem_id` and the `tokens` ({input, output}) of its request(s).
    """

    progress_file: str | None = None
    ledger_file: str | None = None
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
        if self.ledger_file:
            append_ledger(self.ledger_file, [{"problem_id": row["problem_id"],
                                              "tokens": _tokens(row)} for row in inputs])
        yield inputs


class ProblemsWithinBudget(FeedWithinBudget, LoadDataFromDicts):
    """Feeds the problems in batches, and with a budget stops feeding once it is reached.

    The budget is checked (steps.budget.FeedWithinBudget) against `spent` (earlier E-steps'
    tokens) plus what both scoring steps wrote to `ledger_file` for the fed problems.
    """

    id_column: ClassVar[str] = "problem_id"
    copies: ClassVar[int] = 2  # the sampled and the greedy branch each score every problem

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        """Batches of problems, the last one flagged; fewer once the budget is reached."""
        yield from self.feed(self.data[offset:])


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
    """Every sampled problem's result, in input order, and the wall time of the E-step in seconds.

    `tokens`: input and output tokens of all its requests. `not_done`: the problems a budget cap
    left unsampled (they have no result), and `capped` the cap's one-line reason.
    """

    results: list[ProblemResult]
    seconds: float
    tokens: dict[str, int] = dataclasses.field(default_factory=lambda: {"input": 0, "output": 0})
    not_done: list[Problem] = dataclasses.field(default_factory=list)
    capped: str | None = None

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


def _tokens(row: dict[str, Any] | None) -> dict[str, int]:
    """Input and output tokens of a row's requests (the `LLMStep` base's counts)."""
    tokens = (row or {}).get("tokens") or {}
    return {k: int(tokens.get(k) or 0) for k in ("input", "output")}


def run_estep(problems: list[Problem], engine: str, *, k: int, max_per_problem: int, seed: int,
              sampling: dict[str, Any] | None = None, max_new_tokens: int = 256,
              batch_size: int = 8, cluster: ClusterOptions | None = None,
              serving: ServingOptions | None = None, budget: TokenBudget | None = None,
              spent: dict[str, int] | None = None) -> EStepResult:
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
        serving: the recipe's serving options: a server engine keeps at most `max_concurrency`
            requests in flight (both branches together; default `ServingOptions.concurrency`),
            with its request timeout and retries. None: the engine's own defaults, no shared
            limit.
        budget: caps on the run's tokens / cost; problems stop being fed once reached.
        spent: tokens ({input, output}) earlier E-steps of the run used, counted against `budget`.
    """
    sampling = {**PAPER_SAMPLING, **(sampling or {})}
    # The two branches' replicas share the CPU (on 2 cores with 2 replicas: one thread each). A
    # second thread in one process slowed llama.cpp on 2 cores (79 against 104 tokens/s, batched
    # k = 16, SmolLM2-135M F32), whereas a second replica (`--replicas 2`) decoded 1.64x faster
    # with the same texts.
    replicas = cluster.replicas if cluster is not None else 1
    threads = max(1, (os.cpu_count() or 2) // (2 * replicas))
    data = [{"problem_id": p.id, "problem": json.dumps(dataclasses.asdict(p)),
             "prompt": solution_prompt(p)} for p in problems]
    prompts = [row["prompt"] for row in data]
    concurrency = serving.concurrency(engine) if serving else 1
    batch_size = items_per_batch(batch_size, concurrency, [engine])
    # Ray actors on other nodes cannot share this process's slots (a Manager).
    shared = [] if serving is None or (cluster is not None and cluster.ray) else [engine]
    with tempfile.TemporaryDirectory(prefix="rest-em-cache-") as cache, \
            ServerSlots(shared, concurrency) as slots, \
            Pipeline(name="rest-em-estep", cache_dir=cache) as pipeline:
        ledger = str(Path(cache) / "tokens.jsonl")
        load = ProblemsWithinBudget(
            data=data, batch_size=batch_size, ledger_file=ledger, spent=spent or {},
            budget=budget.step_field() if budget is not None else None)
        sample = SampleSolutions(
            name="sample_solutions", k=k, seed=seed, input_batch_size=batch_size,
            llm=build_llm(engine, n_threads=threads, max_new_tokens=max_new_tokens,
                          sequences=batch_size * k, prompts=prompts, **sampling))
        greedy = SampleSolutions(
            name="greedy_solution", seed=seed, input_batch_size=batch_size,
            llm=build_llm(engine, n_threads=threads, max_new_tokens=max_new_tokens,
                          sequences=batch_size, prompts=prompts, **GREEDY))
        if serving is not None:  # both branches: the same slots, timeout and retries
            for step in (sample, greedy):
                slots.serve(step.llm, engine, serving.request_timeout, serving.request_retries)
        progress = Path(cache) / "scored.progress"
        progress.touch()
        score = ScoreSolutions(name="score_samples", input_batch_size=batch_size,
                               progress_file=str(progress), ledger_file=ledger, samples=k)
        score_greedy = ScoreSolutions(name="score_greedy", input_batch_size=batch_size,
                                      ledger_file=ledger)
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
        lines = read_ledger(ledger)
    tokens = ledger_tokens(lines)
    sampled_rows = {row["problem_id"]: row for row in distiset["keep_correct"]["train"]}
    greedy_rows = {row["problem_id"]: row for row in distiset["score_greedy"]["train"]}
    results, not_done = [], []
    for p in problems:
        row, greedy_row = sampled_rows.get(p.id), greedy_rows.get(p.id)
        if budget is not None and budget.capped and row is None and greedy_row is None:
            not_done.append(p)  # never fed: the cap was reached first
            continue
        solutions = row["solution"] if row else [None] * k
        if not isinstance(solutions, list):  # k = 1: the one text (SampleSolutions.apply)
            solutions = [solutions]
        results.append(ProblemResult(
            problem=p, solutions=solutions,
            scored=_scored(row, k) if row else [Scored("no_output")] * k,
            kept=(row or {}).get("kept") or [],
            greedy=_scored(greedy_row, 1)[0] if greedy_row else Scored("no_output"),
            output_tokens=_tokens(row)["output"] + _tokens(greedy_row)["output"]))
    capped = None
    if not_done and budget is not None:
        spent = spent or {}
        capped = budget.reached({k: spent.get(k, 0) + tokens[k] for k in tokens})
    return EStepResult(results, seconds, tokens, not_done, capped)
