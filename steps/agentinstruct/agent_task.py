"""The base of every AgentInstruct agent step.

distilabel's Task maps one row to one LLM call. An AgentInstruct work item fans out (one passage
yields several tasks, each refined and answered), so here `format_input` returns the list of
requests a row needs, all requests of a batch go to the engine together, and `format_output`
parses one reply. Replies that fail to parse are retried with fresh sampling (bounded); what still
fails is recorded in the row's `failures` with the agent, the raw output and the reason, and
travels on to the failures table. Nothing is dropped silently.

(No `from __future__ import annotations` here: distilabel reads the `StepInput` hint at runtime.)
"""

import json
from abc import abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from distilabel.steps import StepInput
from distilabel.steps.tasks import Task
from distilabel.typing import StepOutput
from pydantic import BaseModel, PrivateAttr, ValidationError

from steps.taxonomy import TAXONOMY_DIR, Skill, Taxonomy, load_taxonomy


@dataclass(frozen=True)
class Request:
    key: Hashable  # where the reply goes back in the row (e.g. the task index)
    agent: str  # which agent asked, for the failures table
    messages: list[dict[str, str]]
    schema: type[BaseModel] | None = None  # structured reply: constrained and validated


class OutputError(ValueError):
    """A reply that cannot be used; `reason` is the short label counted on the card."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentTask(Task):
    stage: ClassVar[str]
    max_retries: int = 2
    retry_temperature: float = 0.7
    taxonomy_dir: str = str(TAXONOMY_DIR)
    _taxonomy: Taxonomy = PrivateAttr()

    def load(self) -> None:
        super().load()
        self._taxonomy = load_taxonomy(Path(self.taxonomy_dir))

    def skill(self, row: dict[str, Any]) -> Skill:
        return self._taxonomy.skill(row["skill"])

    @property
    def inputs(self) -> list[str]:
        return ["item_id", "skill"]

    @property
    def outputs(self) -> list[str]:
        return ["failures", "tokens", "calls"]

    @abstractmethod
    def format_input(self, input: dict[str, Any]) -> list[Request]:  # type: ignore[override]
        """The requests this row needs (only called for rows no earlier stage failed)."""

    @abstractmethod
    def apply(self, row: dict[str, Any], replies: dict[Hashable, Any]) -> None:
        """Write the parsed replies (by request key) into the row; failed keys are absent."""

    def format_output(self, output: str | None, input: Request | None = None) -> Any:  # type: ignore[override]
        if output is None:
            raise OutputError("engine_error")
        if input is None or input.schema is None:
            text = output.strip()
            if not text:
                raise OutputError("empty_output")
            return text
        try:
            # strict=False: llama.cpp's JSON grammar lets raw newlines into strings.
            data = json.loads(output, strict=False)
        except json.JSONDecodeError:
            raise OutputError("invalid_json") from None
        try:
            return input.schema.model_validate(data)
        except ValidationError:
            raise OutputError("schema_mismatch") from None

    def _engine_input(self, request: Request) -> Any:
        if request.schema is None:
            return request.messages
        return (request.messages, {"format": "json", "schema": request.schema.model_json_schema()})

    def _sampling(self, attempt: int) -> dict[str, Any]:
        """The LLM's own settings first; retries sample afresh, still seeded (reproducible)."""
        kwargs = dict(self.llm.get_generation_kwargs())
        if attempt:
            kwargs["temperature"] = max(kwargs.get("temperature", 0.0), self.retry_temperature)
            kwargs["seed"] = kwargs.get("seed", 0) + 1000 * attempt
        return kwargs

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = [{**row, "failures": list(row.get("failures") or []),
                 "tokens": dict(row.get("tokens") or {"input": 0, "output": 0}),
                 "calls": dict(row.get("calls") or {})} for row in inputs]
        pending = [(i, req) for i, row in enumerate(rows) if not row.get("failed")
                   for req in self.format_input(row)]
        for i, req in pending:  # per agent: [requests, retries, failed] -> parse-failure rates
            rows[i]["calls"].setdefault(f"{self.stage}/{req.agent}", [0, 0, 0])[0] += 1
        replies: list[dict[Hashable, Any]] = [{} for _ in rows]
        last_error: dict[tuple[int, Hashable], tuple[str, str | None]] = {}
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            outputs = self.llm.generate_outputs(
                inputs=[self._engine_input(req) for _, req in pending],
                num_generations=1,
                **self._sampling(attempt),
            )
            retry = []
            for (i, req), output in zip(pending, outputs, strict=True):
                rows[i]["calls"][f"{self.stage}/{req.agent}"][1] += attempt > 0
                text = output["generations"][0]
                stats = output.get("statistics") or {}
                rows[i]["tokens"]["input"] += sum(stats.get("input_tokens") or [0])
                rows[i]["tokens"]["output"] += sum(stats.get("output_tokens") or [0])
                try:
                    replies[i][req.key] = self.format_output(text, req)
                except OutputError as error:
                    last_error[(i, req.key)] = (error.reason, text)
                    retry.append((i, req))
            pending = retry
        for i, req in pending:
            rows[i]["calls"][f"{self.stage}/{req.agent}"][2] += 1
            reason, raw = last_error[(i, req.key)]
            rows[i]["failures"].append({"stage": self.stage, "agent": req.agent, "reason": reason,
                                        "raw_output": raw, "key": json.dumps(req.key)})
        for row, row_replies in zip(rows, replies, strict=True):
            if not row.get("failed"):
                self.apply(row, row_replies)
        yield rows
