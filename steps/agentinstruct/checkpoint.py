"""Checkpoints: what makes an interrupted run resumable with nothing lost or doubled.

The generator reads the planned work items from a Parquet file; the last step writes each finished
batch of items as rows + failures and then, last, a `.done.json` marker naming the batch's items.
A batch without its marker (the process was killed mid-write) does not count and is redone; a
restarted run plans the same items and feeds the generator only those not yet done.

Every path here is an fsspec URL or a local path (`steps.storage`): under Ray the writer runs on
any node, so the plan and the checkpoints live where every node reaches them (`s3://…`); each
file is written whole (atomic rename locally, one put on an object store), the marker last.
"""

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from distilabel.steps import Step, StepInput
from distilabel.typing import GeneratorStepOutput, StepOutput
from typing_extensions import override

from steps import repo_folder, storage
from steps.budget import FeedWithinBudget
from steps.llm_step import rerun_may_fix
from steps.rows import FAILURE_SCHEMA, FUNNEL_SCHEMA, ROW_SCHEMA, stable_id, to_table

TRIES = "tries"  # one file per try of the run: its elapsed wall time
ORDER = "_order"  # hidden sort key: item, task, round, so configs come out in plan order
ITEM = "_item_id"  # the work item a checkpointed row came from (a rerun may retry that item)
CHECKPOINT_SCHEMA = ROW_SCHEMA.append(pa.field(ORDER, pa.int64())).append(
    pa.field("quota", pa.int64())).append(pa.field(ITEM, pa.string()))


class PlannedItems(FeedWithinBudget):
    """Feeds the work items of the plan file, in batches (the last one flagged as last).

    With a budget (`--max-tokens-total`, `--max-cost`: steps.budget.FeedWithinBudget) it stops
    feeding once the committed batches in `batches_dir` have used the cap: the items not fed stay
    not done, for a rerun with a higher cap.
    """

    id_column: ClassVar[str] = "item_id"
    plan_path: str
    batches_dir: str | None = None  # the CheckpointWriter's work_dir (needed with a budget)

    @property
    @override
    def outputs(self) -> list[str]:
        return ["item_id", "skill", "seed_text", "transformation_agent", "instruction_agent",
                "tasks", "refined", "refinement_goals"]

    @override
    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        yield from self.feed(storage.read_parquet(self.plan_path).to_pylist()[offset:])

    @property
    @override
    def measures(self) -> bool:
        return self.batches_dir is not None

    @override
    def _used(self, wanted: set[Hashable], poll_s: float = 0.2) -> dict[str, int]:
        """Tokens of the committed batches, once every item of `wanted` is committed."""
        while not wanted <= (checkpoints := Checkpoints(str(self.batches_dir))).done:
            time.sleep(poll_s)
        return {k: self.spent.get(k, 0) + v for k, v in checkpoints.tokens.items()}


class CheckpointWriter(Step):
    """Turns finished items into dataset rows and failure records, written batch by batch."""

    work_dir: str
    run_id: str
    agent_model: str
    teacher_model: str
    generation_params: str  # JSON

    @property
    @override
    def inputs(self) -> list[str]:
        return ["item_id", "units", "failures", "tokens", "calls", "engine_retries"]

    @property
    @override
    def outputs(self) -> list[str]:
        return ["item_id"]

    def _rows(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"id": stable_id(item["item_id"], unit["task"], unit["round"]),
             "messages": unit["messages"], "flow": "agentinstruct", "skill": item["skill"],
             "config": item["config"], "subcategory": item["instruction_agent"],
             "seed_id": item["seed_id"], "seed_source": item["seed_source"],
             "transformation_agent": item["transformation_agent"],
             "refinement_round": unit["round"], "refinement_goal": unit["goal"],
             "reference_answer": unit["reference_answer"], "agent_model": self.agent_model,
             "teacher_model": self.teacher_model, "generation_params": self.generation_params,
             "run_id": self.run_id, "quota": item["quota"],
             ORDER: (item["item_index"] * 1000 + unit["task"]) * 100 + unit["round"],
             ITEM: item["item_id"]}
            for unit in item.get("units") or [] if unit.get("messages")
        ]

    def _failures(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**failure, "run_id": self.run_id, "flow": "agentinstruct", "skill": item["skill"],
                 "config": item["config"], "seed_id": item["seed_id"], "item_id": item["item_id"]}
                for failure in item.get("failures") or []]

    @override
    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        batch = storage.join(self.work_dir, stable_id(sorted(i["item_id"] for i in inputs)))
        rows = [row for item in inputs for row in self._rows(item)]
        failures = [f for item in inputs for f in self._failures(item)]
        storage.write_parquet(f"{batch}.rows.parquet", to_table(rows, CHECKPOINT_SCHEMA))
        storage.write_parquet(f"{batch}.failures.parquet", to_table(failures, FAILURE_SCHEMA))
        calls: dict[str, list[int]] = {}
        for item in inputs:
            for agent, counts in (item.get("calls") or {}).items():
                calls[agent] = [a + b for a, b in zip(calls.get(agent, [0, 0, 0]), counts,
                                                      strict=True)]
        engine_retries: Counter[str] = Counter()
        for item in inputs:
            engine_retries.update(item.get("engine_retries") or {})
        marker = {"items": [i["item_id"] for i in inputs], "calls": calls,
                  "engine_retries": dict(engine_retries),
                  "configs": sorted({i["config"] for i in inputs}),
                  "tokens": {k: sum(i["tokens"][k] for i in inputs) for k in ("input", "output")}}
        storage.write_bytes_atomic(f"{batch}.done.json", json.dumps(marker).encode())  # the commit
        yield [{"item_id": i["item_id"]} for i in inputs]


class Checkpoints:
    """Reads what earlier (possibly interrupted) runs of the same plan have written."""

    def __init__(self, work_dir: str | Path) -> None:
        """Read the batch markers under `work_dir` (an fsspec URL or a local path)."""
        self.work_dir = str(work_dir)
        self.markers = self._markers()

    def _files(self, pattern: str) -> list[str]:
        return storage.glob(storage.join(self.work_dir, pattern))

    def _markers(self) -> list[dict[str, Any]]:
        return [json.loads(storage.read_bytes(p)) for p in self._files("*.done.json")]

    @contextmanager
    def timed(self, interval_s: float = 5.0) -> Iterator[None]:
        """Record this try's elapsed wall time in the checkpoints while the block runs.

        It is written at the start, every `interval_s` seconds and at the end, so that
        `elapsed_s` of a resumed run includes tries that were killed (less at most `interval_s`
        each).
        """
        path = storage.join(self.work_dir, TRIES, f"{time.time_ns()}-{os.getpid()}.json")
        started, stop = time.monotonic(), threading.Event()

        def record() -> None:
            elapsed = {"elapsed_s": round(time.monotonic() - started, 1)}
            storage.write_bytes_atomic(path, json.dumps(elapsed).encode())

        def beat() -> None:
            while not stop.wait(interval_s):
                record()

        record()
        heartbeat = threading.Thread(target=beat, name="checkpoint-clock", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            record()

    @property
    def elapsed_s(self) -> float:
        """Wall time of every try of this run so far (seconds), killed tries included."""
        tries = storage.glob(storage.join(self.work_dir, TRIES, "*.json"))
        return round(sum(json.loads(storage.read_bytes(p))["elapsed_s"] for p in tries), 1)

    @property
    def done(self) -> set[str]:
        """The ids of the items whose batch is committed (has its `.done.json` marker)."""
        return {item for marker in self.markers for item in marker["items"]}

    @property
    def tokens(self) -> dict[str, int]:
        """Input and output tokens used by the committed batches."""
        return {k: sum(m["tokens"][k] for m in self.markers) for k in ("input", "output")}

    @property
    def agent_calls(self) -> dict[str, dict[str, float]]:
        """Call counts of each agent over the committed batches.

        Per `stage/agent`: requests, parse retries, failures, the parse-failure rate and the
        retries the engine made itself (server errors, timeouts).
        """
        total: Counter[tuple[str, int]] = Counter()
        for marker in self.markers:
            for agent, counts in marker["calls"].items():
                for index, count in enumerate(counts):
                    total[(agent, index)] += count
        engine: Counter[str] = Counter()
        for marker in self.markers:
            engine.update(marker.get("engine_retries") or {})
        return {agent: {"requests": total[(agent, 0)], "retries": total[(agent, 1)],
                        "failures": total[(agent, 2)], "engine_retries": engine[agent],
                        "failure_rate": round(total[(agent, 2)] / max(total[(agent, 0)], 1), 3)}
                for agent in sorted({agent for agent, _ in total})}

    def _read(self, suffix: str, schema: pa.Schema) -> pl.DataFrame:
        parts = [storage.read_parquet(p.removesuffix(".done.json") + suffix)
                 for p in self._files("*.done.json")]
        return pl.from_arrow(pa.concat_tables(parts) if parts else schema.empty_table())

    def assemble(self, repo_dir: Path) -> dict[str, Any]:
        """Write the committed rows and failures into the repo folder.

        The skill configs are trimmed to each skill's quota and kept in plan order; the failures
        config and the funnel replace what an earlier run of this flow wrote.

        Returns:
            Counts for run.json and the card's funnel.
        """
        rows = self._read(".rows.parquet", CHECKPOINT_SCHEMA).sort(ORDER)
        failures = self._read(".failures.parquet", FAILURE_SCHEMA).select(FAILURE_SCHEMA.names)
        funnel: Counter[tuple[str, str]] = Counter()
        counts = {}
        for config, group in rows.group_by("config", maintain_order=True):
            quota = group["quota"][0]
            kept = group.head(quota)
            write = kept.select(ROW_SCHEMA.names).to_arrow().cast(ROW_SCHEMA)
            repo_folder.write_config(repo_dir, str(config[0]), write)
            counts[str(config[0])] = kept.height
            if group.height > quota:
                funnel[(str(config[0]), "over_quota")] += group.height - quota
        for failure in failures.iter_rows(named=True):  # under its config even with no rows
            funnel[(failure["config"], f"{failure['stage']}:{failure['reason']}")] += 1
        for config in {c for marker in self.markers for c in marker["configs"]} - counts.keys():
            repo_folder.remove_config(repo_dir, config)  # no rows this time: no stale config
        # This flow's results replace what an earlier run wrote; other flows add theirs after.
        repo_folder.remove_config(repo_dir, repo_folder.FAILURES)
        (repo_dir / repo_folder.FUNNEL_FILE).unlink(missing_ok=True)
        funnel_rows = [{"config": c, "stage": "generation", "reason": r, "rows": n}
                       for (c, r), n in sorted(funnel.items())]
        repo_folder.add_generation_results(repo_dir, failures.to_arrow().cast(FAILURE_SCHEMA),
                                           to_table(funnel_rows, FUNNEL_SCHEMA))
        return {"rows": counts, "failures": failures.height, "tokens": self.tokens,
                "agent_calls": self.agent_calls,
                "failure_reasons": {f"{c}/{r}": n for (c, r), n in sorted(funnel.items())}}

    def discard_failed(self) -> int:
        """Un-commit the items that hold failures a rerun may fix (engine errors).

        A rerun then retries exactly those items; the other items of their batches stay done
        with their rows (re-committed as a batch of their own). Content failures are final
        outcomes and stay committed.

        Returns:
            The number of items un-committed.
        """
        retried = 0
        for path in self._files("*.failures.parquet"):
            failures = storage.read_parquet(path)
            retry = {f["item_id"] for f in failures.select(["item_id", "reason"]).to_pylist()
                     if rerun_may_fix(f)}
            if not retry:
                continue
            batch = path.removesuffix(".failures.parquet")
            marker = json.loads(storage.read_bytes(f"{batch}.done.json"))
            rows = storage.read_parquet(f"{batch}.rows.parquet")
            # The old marker goes first: a crash from here on redoes the whole batch (more work,
            # never a lost or doubled row); the kept items are committed anew below.
            storage.remove(f"{batch}.done.json")
            keep = [item for item in marker["items"] if item not in retry]
            if keep:
                kept = storage.join(self.work_dir, stable_id(sorted(keep)))
                storage.write_parquet(f"{kept}.rows.parquet", rows.filter(
                    pc.invert(pc.is_in(rows[ITEM], pa.array(sorted(retry))))))
                storage.write_parquet(f"{kept}.failures.parquet", failures.filter(
                    pc.invert(pc.is_in(failures["item_id"], pa.array(sorted(retry))))))
                storage.write_bytes_atomic(f"{kept}.done.json",
                                           json.dumps({**marker, "items": keep}).encode())
            for suffix in (".rows.parquet", ".failures.parquet"):
                storage.remove(batch + suffix)
            retried += len(set(marker["items"]) & retry)
        self.markers = self._markers()
        return retried

    def discard_incomplete(self) -> int:
        """Remove files of batches that never got their marker; they will be redone."""
        done = {p.removesuffix(".done.json") for p in self._files("*.done.json")}
        stale = [p for p in self._files("*.parquet") if p.rsplit(".", 2)[0] not in done]
        for path in stale:
            storage.remove(path)
        return len(stale)
