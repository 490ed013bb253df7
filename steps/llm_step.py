"""The one base of every LLM step: fan-out, seeding, bounded retries, failure records, counts.

distilabel's Task maps one row to one LLM call. The project's steps fan out (an AgentInstruct
passage yields several tasks, each refined and answered; a ReST-EM problem wants k samples), so a
step here says which requests a row needs (`requests`) and what to do with the parsed replies
(`apply`); the base sends all requests of a batch to the engine together and does the rest the
same way for every flow:

- Seeding: one rule, `request_seed(run seed, row id, stage, request key, attempt)`; the engine
  derives each generation's seed from it and the prompt (`steps.llms.base.sample_seed`). Outputs
  depend neither on batching nor on order, and a retry samples afresh, still reproducibly.
- Retries: a reply that fails to parse (`parse` raises `OutputError`) is asked again, up to
  `max_retries` times, at `retry_temperature` at least. Engine errors are not: the engine already
  retried what was transient, so they are recorded at once with the engine's reason
  (`engine_error:503`, `context_overflow`, …).
- Failures: every request that still fails becomes a record in the row's `failures` list:
  {stage, agent, reason, raw_output, message, key}. A row whose `failed` is true cannot go on:
  later LLM steps pass it through untouched, and it reaches the end as counted failures.
- Counts: `tokens` {input, output}; `calls` {"stage/agent": [requests, retries, failures]};
  `engine_retries` {"stage/agent": retries the engine made itself}.
- Nothing vanishes: an exception in a step's own code or in the engine call is caught per row or
  per call and recorded (reason `step_error` / `engine_error:exception`), since distilabel would
  otherwise forward the whole batch with its outputs set to None (distilabel 1.5.3: a non-global
  step that raises logs a warning and forwards its batch with outputs None).
"""

import json
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

from distilabel.steps import StepInput
from distilabel.steps.tasks import Task
from distilabel.typing import StepOutput
from pydantic import BaseModel, ValidationError
from typing_extensions import override

from steps.llms.base import Prompt, engine_error, sample_seed

STEP_ERROR = "step_error"  # the step's own code raised on this row (see `message`)
UPSTREAM_ERROR = "upstream_step_error"  # distilabel dropped this row's outputs upstream
FAILURE_FIELDS = ("stage", "agent", "reason", "raw_output", "message", "key")


@dataclass(frozen=True)
class Request:
    """One LLM call a row needs."""

    key: Hashable  # where the reply goes back in the row (unique within the row)
    agent: str  # who asks: failure records and call counts
    messages: list[dict[str, str]] | str  # a chat, or a raw prompt (engines with raw_prompts)
    schema: type[BaseModel] | dict[str, Any] | None = None  # structured reply: constrained
    num_generations: int = 1  # >1: the reply is a list, one parsed item (or None) per sample


class OutputError(ValueError):
    """A reply that cannot be used; `reason` is the short label counted on the card."""

    def __init__(self, reason: str) -> None:
        """Keep `reason`, the label the card counts."""
        super().__init__(reason)
        self.reason = reason


def request_seed(seed: int, row_id: Any, stage: str, key: Hashable, attempt: int) -> int:
    """The seed of one request: the run seed, the row, the stage, the request and the attempt."""
    return sample_seed(seed, row_id, stage, key, attempt)


def row_failed(row: dict[str, Any]) -> bool:
    """Whether the row failed upstream.

    Marked failed, or `failed` is None because a step raised and distilabel forwarded its batch
    with every output set to None.
    """
    return bool(row.get("failed")) or ("failed" in row and row["failed"] is None)


def rerun_may_fix(failure: dict[str, Any]) -> bool:
    """Whether rerunning the same command may fix a failure: the engine was unavailable or overloaded.

    That is 5xx, 429, 408, timeouts, resets, the breaker's deadline or an engine that raised;
    parse failures, 4xx such as 400 and context_overflow would fail again. Items with such
    failures are not marked done, and a rerun retries exactly those.
    """
    reason = str(failure.get("reason") or "")
    if not reason.startswith("engine_error"):
        return False
    status = reason.rpartition(":")[2]
    return not status.isdigit() or int(status) >= 500 or int(status) in (408, 409, 425, 429)


def failure_record(stage: str, agent: str | None, reason: str, raw_output: str | None = None,
                   message: str | None = None, key: Hashable = None) -> dict[str, Any]:
    """The one failure record of the project (a `failures` list item)."""
    return {"stage": stage, "agent": agent, "reason": reason, "raw_output": raw_output,
            "message": message, "key": None if key is None else json.dumps(key)}


class LLMStep(Task):
    """A distilabel Task whose rows fan out into `requests`; see the module docstring.

    Input columns:
        - `row_id` (class attribute, default `item_id`): seeds each request; plus what the
          subclass reads.

    Output columns:
        - failures (`list[dict]`): failure records {stage, agent, reason, raw_output, message, key}.
        - failed (`bool`): the row cannot go on; later LLM steps pass it through.
        - tokens (`dict`): {input, output} token counts.
        - calls (`dict`): {"stage/agent": [requests, retries, failures]}.
        - engine_retries (`dict`): {"stage/agent": retries the engine made itself}.
        - and what the subclass writes in `apply`.

    Failure reasons: `empty_output`, `invalid_json`, `schema_mismatch` (replies, retried up to
    `max_retries`); the engine's `engine_error:<status>`, `engine_error:exception`,
    `context_overflow`; `step_error` (the step's own code raised on the row);
    `upstream_step_error` (distilabel dropped the row's outputs upstream).

    References:
        - distilabel 1.5.3: a non-global step that raises forwards its batch with outputs None,
          hence the per-row and per-call catching.
    """

    stage: ClassVar[str | None] = None  # None: the step's name (Magpie's instruction_1, …)
    row_id: ClassVar[str] = "item_id"  # the column that identifies a row, for seeding
    seed: int | None = None  # the run seed; None: the LLM's `seed` generation setting
    max_retries: int = 2  # re-asks of a request whose reply did not parse
    retry_temperature: float = 0.7

    @property
    def stage_name(self) -> str:
        """Names this step in seeds, failure records and counts."""
        return self.stage or self.name

    @property
    @override
    def inputs(self) -> list[str]:
        return [self.row_id]

    @property
    @override
    def outputs(self) -> list[str]:
        return ["failures", "failed", "tokens", "calls", "engine_retries"]

    @abstractmethod
    def requests(self, row: dict[str, Any]) -> list[Request]:
        """The requests this row needs (only called for rows not failed upstream)."""

    @abstractmethod
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        """Write the parsed replies (by request key) into the row; failed keys are absent.

        Set `row["failed"] = True` when the row cannot go on.
        """

    def parse(self, text: str, request: Request) -> Any:
        """A reply's use: stripped text, or the schema's model (a dict schema: the JSON value).

        Raises:
            OutputError: `empty_output`, `invalid_json` or `schema_mismatch`.
        """
        if request.schema is None:
            if not text.strip():
                raise OutputError("empty_output")
            return text.strip()
        try:
            # strict=False: llama.cpp's JSON grammar lets raw newlines into strings.
            data = json.loads(text, strict=False)
        except json.JSONDecodeError:
            raise OutputError("invalid_json") from None
        if isinstance(request.schema, dict):
            return data
        try:
            return request.schema.model_validate(data)
        except ValidationError:
            raise OutputError("schema_mismatch") from None

    def format_input(self, input: dict[str, Any]) -> Any:
        """Distilabel's one-call interface (`Task.print`): the row's first request."""
        return self.requests(input)[0].messages

    def format_output(self, output: str | None, input: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        """Distilabel's one-call interface: the row with `output` as the reply to its first request.

        Raises:
            OutputError: the reply does not parse.
        """
        row = dict(input or {})
        request = self.requests(row)[0]
        if output is None:
            raise OutputError("engine_error")
        self.apply(row, {request.key: self.parse(output, request)})
        return row

    def _run_seed(self) -> int:
        return self.seed if self.seed is not None else self.llm.get_generation_kwargs().get(
            "seed", 0)

    def _prompt(self, row: dict[str, Any], request: Request, attempt: int) -> Prompt:
        schema = request.schema
        if isinstance(schema, type):
            schema = schema.model_json_schema()
        return Prompt(request.messages, schema, request_seed(
            self._run_seed(), row.get(self.row_id), self.stage_name, request.key, attempt))

    def _generate(self, rows: list[dict[str, Any]], pending: list[tuple[int, Request]],
                  attempt: int) -> list[dict[str, Any]]:
        """One engine output per pending request; a raising engine call becomes errors."""
        kwargs = dict(self.llm.get_generation_kwargs())
        if attempt:
            kwargs["temperature"] = max(kwargs.get("temperature", 0.0), self.retry_temperature)
        outputs: list[dict[str, Any]] = [{} for _ in pending]
        by_count: dict[int, list[int]] = defaultdict(list)
        for index, (_, request) in enumerate(pending):
            by_count[request.num_generations].append(index)
        for count, members in by_count.items():
            prompts = [self._prompt(rows[pending[m][0]], pending[m][1], attempt) for m in members]
            try:
                got = self.llm.generate_outputs(inputs=prompts, num_generations=count, **kwargs)
            except Exception as error:  # noqa: BLE001 - recorded per request, batch kept
                self._logger.warning(f"engine call failed: {type(error).__name__}: {error}")
                failed = engine_error("engine_error:exception", f"{type(error).__name__}: {error}")
                got = [{"generations": [None] * count, "errors": [failed] * count}] * len(members)
            for member, output in zip(members, got, strict=True):
                outputs[member] = output
        return outputs

    def _prepare(self, row: dict[str, Any]) -> dict[str, Any]:
        prepared = {**row, "failures": list(row.get("failures") or []),
                    "tokens": dict(row.get("tokens") or {"input": 0, "output": 0}),
                    "calls": {k: list(v) for k, v in (row.get("calls") or {}).items()},
                    "engine_retries": dict(row.get("engine_retries") or {}),
                    "failed": row_failed(row)}
        if "failed" in row and row["failed"] is None and not any(
                f["reason"] == UPSTREAM_ERROR for f in prepared["failures"]):
            prepared["failures"].append(failure_record(
                "unknown", None, UPSTREAM_ERROR, message="an earlier step raised; see the log"))
        return prepared

    def _step_error(self, row: dict[str, Any], error: Exception) -> None:
        self._logger.warning(f"{self.stage_name}: row {row.get(self.row_id)} failed: {error!r}")
        scrubbed = engine_error(STEP_ERROR, f"{type(error).__name__}: {error}")
        row["failures"].append(failure_record(self.stage_name, None, STEP_ERROR,
                                              message=scrubbed["message"]))
        row["failed"] = True

    def _count(self, row: dict[str, Any], agent: str, index: int, amount: int = 1) -> None:
        row["calls"].setdefault(f"{self.stage_name}/{agent}", [0, 0, 0])[index] += amount

    def _reply(self, row: dict[str, Any], request: Request, output: dict[str, Any],
               attempt: int) -> tuple[Any, list[dict[str, Any]], bool]:
        """(parsed reply, failure records, whether to ask again) for one engine output."""
        texts = output.get("generations") or [None] * request.num_generations
        errors = output.get("errors") or [None] * len(texts)
        stats = output.get("statistics") or {}
        row["tokens"]["input"] += sum(stats.get("input_tokens") or [0])
        row["tokens"]["output"] += sum(stats.get("output_tokens") or [0])
        label = f"{self.stage_name}/{request.agent}"
        row["engine_retries"][label] = (row["engine_retries"].get(label, 0)
                                        + sum(stats.get("retries") or [0]))
        parsed, failures, parse_failed = [], [], False
        for text, error in zip(texts, errors, strict=True):
            if text is None:  # the engine's reason, or a bare None from a foreign engine
                error = error or {"reason": "engine_error", "message": None}
                failures.append(failure_record(self.stage_name, request.agent, error["reason"],
                                               None, error["message"], request.key))
                parsed.append(None)
                continue
            try:
                parsed.append(self.parse(text, request))
            except OutputError as failure:
                failures.append(failure_record(self.stage_name, request.agent, failure.reason,
                                               text, None, request.key))
                parsed.append(None)
                parse_failed = True
        # Only a single reply that failed to parse is asked again; k samples keep their holes.
        again = (request.num_generations == 1 and parse_failed and attempt < self.max_retries)
        return (parsed if request.num_generations > 1 else parsed[0]), failures, again

    @override
    def process(self, inputs: StepInput) -> StepOutput:
        rows = [self._prepare(row) for row in inputs]
        pending: list[tuple[int, Request]] = []
        for index, row in enumerate(rows):
            if row["failed"]:
                continue
            try:
                pending += [(index, request) for request in self.requests(row)]
            except Exception as error:  # noqa: BLE001 - the row fails, the batch goes on
                self._step_error(row, error)
        for index, request in pending:
            self._count(rows[index], request.agent, 0)
        replies: list[dict[Hashable, Any]] = [{} for _ in rows]
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            retry = []
            for (index, request), output in zip(
                    pending, self._generate(rows, pending, attempt), strict=True):
                row = rows[index]
                self._count(row, request.agent, 1, attempt > 0)
                reply, failures, again = self._reply(row, request, output, attempt)
                if again:
                    retry.append((index, request))
                    continue
                if request.num_generations > 1 or not failures:
                    replies[index][request.key] = reply
                row["failures"] += failures
                self._count(row, request.agent, 2, bool(failures))
            pending = retry
        for row, row_replies in zip(rows, replies, strict=True):
            if row["failed"]:
                continue
            try:
                self.apply(row, row_replies)
            except Exception as error:  # noqa: BLE001 - the row fails, the batch goes on
                self._step_error(row, error)
        yield rows
