"""distilabel 1.5.3's RayPipeline on a real Ray cluster (tests/ray_cluster.py): plain steps with
replicas committing to a loopback S3 server (tests/s3_server.py), then an LLM Task on the
embedded llama.cpp engine with one model per replica, through `steps.ray_pipeline` (which works
around the defects shown here). Skipped without ray.

The step classes below are imported by the cluster's worker processes (tests/ is on their
PYTHONPATH), as the package is on every node of a real cluster.

(No `from __future__ import annotations` here: distilabel reads the `StepInput` hint at runtime.)
"""

import json
import os
import time
from typing import Any

import pytest

pytest.importorskip("ray", reason="ray not installed (pip install -e '.[ray]')")

from distilabel.steps import LoadDataFromDicts, Step, StepInput, StepResources  # noqa: E402
from distilabel.steps.tasks import Task  # noqa: E402
from distilabel.typing import StepOutput  # noqa: E402
from ray_cluster import RayCluster, ray_cluster_fixture  # noqa: E402, F401
from s3_server import S3Server, s3_server_fixture, s3_session_fixture  # noqa: E402, F401

from steps import storage  # noqa: E402
from steps.engines import build_llm  # noqa: E402
from steps.pipeline import Pipeline  # noqa: E402
from steps.ray_pipeline import RayPipeline, on_ray  # noqa: E402

PROBE = "GENTEACH_RAY_PROBE"  # set in the driver only; reaches actors through env_vars


class Double(Step):
    """y = 2x, and where it ran: the process and what it sees of the driver's environment."""

    @property
    def inputs(self) -> list[str]:
        return ["x"]

    @property
    def outputs(self) -> list[str]:
        return ["y", "pid", "probe"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        time.sleep(0.3)  # long enough that both replicas take batches
        yield [{**row, "y": 2 * row["x"], "pid": os.getpid(), "probe": os.environ.get(PROBE)}
               for row in inputs]


class Commit(Step):
    """Commits each row as a marker at a shared URL, as the checkpoint writer does."""

    work_url: str

    @property
    def inputs(self) -> list[str]:
        return ["x"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        for row in inputs:
            storage.write_bytes_atomic(storage.join(self.work_url, f"{row['x']}.done.json"),
                                       json.dumps({"items": [row["x"]]}).encode())
        yield inputs


class Answer(Task):
    """One chat turn per instruction."""

    @property
    def inputs(self) -> list[str]:
        return ["instruction"]

    @property
    def outputs(self) -> list[str]:
        return ["answer"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": input["instruction"]}]

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"answer": output}


def _doubling(name: str, work_url: str | None = None) -> Pipeline:
    with Pipeline(name=name) as pipeline:
        load = LoadDataFromDicts(data=[{"x": x} for x in range(6)], batch_size=1)
        double = Double(input_batch_size=1, resources=StepResources(replicas=2))
        load >> double
        if work_url:
            double >> Commit(work_url=work_url, input_batch_size=1)
    return pipeline


def test_distilabel_cannot_pass_a_runtime_env_with_an_address(tmp_path: Any) -> None:
    """Defect 1 of steps.ray_pipeline, as distilabel 1.5.3 has it (fails before connecting)."""
    pipeline = _doubling("defect")
    ray_pipeline = pipeline.ray(ray_head_node_url="127.0.0.1:1",
                                ray_init_kwargs={"runtime_env": {"env_vars": {PROBE: "x"}}})
    with pytest.raises(TypeError, match="multiple values for keyword argument 'runtime_env'"):
        ray_pipeline.run(use_cache=False)


def test_steps_with_replicas_run_on_the_cluster_twice(ray_cluster: RayCluster, s3_server: S3Server) -> None:
    """Two replicas of a step, each an actor process that sees what the driver forwards (here
    the S3 server's variables too) and commits to shared storage the driver then reads."""
    work = s3_server.url("run", ".work")
    pipeline = on_ray(_doubling("doubling", work), ray_cluster.address,
                      env_vars={PROBE: "from-driver", "DISTILABEL_LOG_LEVEL": "WARNING", **s3_server.env})
    assert isinstance(pipeline, RayPipeline)
    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()
    assert sorted((row["x"], row["y"]) for row in rows) == [(x, 2 * x) for x in range(6)]
    assert len({row["pid"] for row in rows}) == 2  # two replicas, each an actor process
    assert os.getpid() not in {row["pid"] for row in rows}
    assert {row["probe"] for row in rows} == {"from-driver"} and PROBE not in os.environ
    assert storage.glob(storage.join(work, "*.done.json")) == [f"{work}/{x}.done.json" for x in range(6)]
    # Defect 2: the same pipeline name again from this driver (the queue actors were shut down).
    again = on_ray(_doubling("doubling"), ray_cluster.address).run(use_cache=False)
    assert sorted(row["y"] for row in again["default"]["train"].to_list()) == [2 * x for x in range(6)]


@pytest.mark.model
def test_llm_task_with_two_llamacpp_replicas(ray_cluster: RayCluster) -> None:
    """One embedded llama.cpp per replica (1 CPU each); seeded per input, so the rows equal the
    same engine's output in this process, whichever replica made them."""
    instructions = ["Name a color.", "Name a fruit.", "Name a planet.", "Name an animal."]
    generation = {"max_new_tokens": 12, "temperature": 0.7, "seed": 5}
    with Pipeline(name="answers") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": i} for i in instructions], batch_size=1)
        load >> Answer(llm=build_llm("embedded", n_threads=1, **generation), input_batch_size=1,
                       resources=StepResources(replicas=2, cpus=1))
    rows = on_ray(pipeline, ray_cluster.address).run(use_cache=False)["default"]["train"].to_list()
    answers = {row["instruction"]: row["answer"] for row in rows}
    assert set(answers) == set(instructions) and all(answers.values())
    local = build_llm("embedded", n_threads=1, **generation)
    local.load()  # after the run: nothing forks from this process any more
    expected = local.generate(inputs=[[{"role": "user", "content": i}] for i in instructions],
                              **local.generation_kwargs)
    local.unload()
    assert [answers[i] for i in instructions] == [e["generations"][0] for e in expected]
