"""Where a recipe's pipeline runs: this machine, or a Ray cluster with replicated LLM steps.

The options are run options (not in the run id): the same command with `--ray` gives the same
rows as without, since every request's seed comes from the row and the step, never from which
replica or process answers it (`steps.llm_step.request_seed`). The pattern is open-r1's
`generate.py`: distilabel's RayPipeline, `StepResources(replicas=…)` for client fan-out against
one inference server per node, or one llama.cpp per replica for local engines.

    distiset = run_pipeline(pipeline, config, n_threads=config.threads)
"""

# No `from __future__ import annotations`: pydantic reads the field hints of the mixin.

import importlib.util
from typing import Any, Self

from distilabel.constants import STEP_ATTR_NAME
from distilabel.models.llms import LLM
from distilabel.pipeline import Pipeline
from pydantic import BaseModel, model_validator

from steps.recipe_config import run_option


class ClusterOptions(BaseModel):
    """Run options of every generation recipe: LLM step replicas, locally or on a Ray cluster."""

    ray: bool = run_option(False, description="run the pipeline on a Ray cluster (extra `[ray]`): "
                           "each LLM step replica is an actor; same rows as without")
    replicas: int = run_option(1, ge=1, description="replicas of each LLM step, with or without "
                               "--ray (client fan-out against a server engine; one llama.cpp "
                               "process each for a local engine)")
    ray_address: str | None = run_option(None, description="HOST:PORT of a running Ray cluster "
                                         "(default: $RAY_ADDRESS, else a local cluster)")
    engine_url: str | None = run_option(None, description="base URL (http://host:port/v1) of a "
                                        "running server to use for llamacpp-server:/vllm:/sglang: "
                                        "engines instead of starting one")

    @model_validator(mode="after")
    def _ray_installed(self) -> Self:
        if self.ray and importlib.util.find_spec("ray") is None:
            raise ValueError("--ray: Ray is not installed; pip install -e '.[ray]'")
        return self


def replicate_llm_steps(pipeline: Pipeline, replicas: int, cpus: int | None = None) -> int:
    """Give every step with an LLM `replicas` replicas; returns the number of LLM steps.

    With `cpus`, each replica of a local llama.cpp engine also reserves that many CPUs (its
    threads), so that Ray places no more replicas on a node than its cores run.
    """
    count = 0
    for name in pipeline.dag:
        step = pipeline.dag.get_step(name)[STEP_ATTR_NAME]
        if isinstance(getattr(step, "llm", None), LLM):
            step.resources.replicas = replicas
            if cpus is not None and getattr(step.llm, "n_threads", None) is not None:
                step.resources.cpus = cpus
            count += 1
    return count


def run_pipeline(pipeline: Pipeline, options: ClusterOptions, *, n_threads: int | None = None) -> Any:
    """Run `pipeline` here or, with `options.ray`, on the Ray cluster; returns its Distiset.

    Args:
        pipeline: built with `with Pipeline(...)`.
        options: the recipe's config.
        n_threads: threads the user gave the local llama.cpp engines, reserved as each replica's
            CPUs on Ray (None: no reservation). Ray keeps an actor pending until its CPUs are
            free, so LLM steps × replicas × threads must fit the cluster's CPUs.
    """
    replicate_llm_steps(pipeline, options.replicas, n_threads if options.ray else None)
    if not options.ray:
        return pipeline.run(use_cache=False)
    from steps.ray_pipeline import on_ray  # (imports ray: the extra)

    return on_ray(pipeline, options.ray_address).run(use_cache=False)
