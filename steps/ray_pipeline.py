"""distilabel's RayPipeline with the defects of 1.5.3 worked around (extra `[ray]`).

Each step replica runs as a Ray actor, the way open-r1's `generate.py` runs distilabel with
`.ray()` and `StepResources(replicas=…)`. distilabel 1.5.3 (unmaintained) breaks in three ways
with ray 2.60, each fixed here:

1. `ray_init_kwargs={"runtime_env": …}` together with `ray_head_node_url` raises `TypeError`
   (it passes `runtime_env={"pip": requirements}` itself), so nothing of the driver's environment
   (log level, `OMP_WAIT_POLICY`, a storage endpoint) can reach the actors, which run in worker
   processes the cluster started. Here `ray.init` gets one `runtime_env` with `env_vars`, and no
   `pip` list (the package is installed on every node; Ray would otherwise build a virtualenv).
2. The queues are named Ray actors that outlive the run, so running a pipeline of the same name
   again from the same driver (ReST-EM's E-step in every iteration, a test) fails with
   `ActorAlreadyExistsError`. Here they are shut down when `run()` returns or raises.
3. Actors' stdout/stderr (import warnings, llama.cpp's logs) flood the driver's terminal; the
   steps' own log records still arrive through distilabel's log queue. Here `log_to_driver` is
   off by default (the worker logs stay in Ray's session folder).

    with Pipeline(name="x") as pipeline:
        ...
    distiset = on_ray(pipeline, address="10.0.0.1:6379").run(use_cache=False)
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from distilabel.constants import INPUT_QUEUE_ATTR_NAME
from distilabel.pipeline import Pipeline
from distilabel.pipeline.ray import RayPipeline as _DistilabelRayPipeline
from typing_extensions import override

# Driver settings the step actors need too (no secrets: those stay in each node's environment,
# since a runtime_env is stored in the cluster's GCS and shown by its tools).
FORWARDED_ENV = ("DISTILABEL_LOG_LEVEL", "OMP_WAIT_POLICY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_DEFAULT_REGION", "HF_ENDPOINT", "HF_HUB_OFFLINE")


class RayPipeline(_DistilabelRayPipeline):
    """distilabel's RayPipeline, fixed: one runtime environment, and its queue actors cleaned up.

    See the module docstring for the defects it works around.

    Args:
        name, description, cache_dir, enable_metadata, requirements: as distilabel's `Pipeline`
            (the cache stays on the driver's disk: distilabel turns `cache_dir` into a local
            `Path`; `requirements` are recorded, not installed on the nodes).
        ray_address: `HOST:PORT` of a running cluster's head (GCS); None connects to `RAY_ADDRESS`
            if set, else starts a local cluster for this process (ray.init's own rules).
        env_vars: variables set in every actor; default: those of `FORWARDED_ENV` the driver has.
            They belong to the process's connection to Ray: the first run connects with them,
            later runs in the same process share them (a warning names any that differ).
        log_to_driver: show the actors' stdout/stderr on the driver's terminal.
        ray_init_kwargs: more `ray.init` arguments (e.g. `num_cpus` for a local cluster).
    """

    def __init__(
        self,
        name: str,
        description: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        enable_metadata: bool = False,
        requirements: list[str] | None = None,
        ray_address: str | None = None,
        env_vars: dict[str, str] | None = None,
        log_to_driver: bool = False,
        ray_init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Configure the pipeline (see the class's Args); Ray is connected by `run()`."""
        super().__init__(name, description, cache_dir, enable_metadata, requirements,
                         ray_head_node_url=ray_address, ray_init_kwargs=ray_init_kwargs)
        self._env_vars = env_vars if env_vars is not None else {
            key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}
        self._log_to_driver = log_to_driver

    def _init_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self._ray_head_node_url, runtime_env={"env_vars": self._env_vars},
                     log_to_driver=self._log_to_driver, **self._ray_init_kwargs)
        else:  # a runtime_env belongs to the connection: a later run in this process shares it
            current = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
            if differing := sorted(k for k, v in self._env_vars.items() if current.get(k) != v):
                self._logger.warning(f"Ray was connected with other values of {', '.join(differing)}; "
                                     "the actors keep those of the first connection")
        self._ray_node_ids = self._get_ray_gpus_per_node()

    @override
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run as distilabel's RayPipeline does, then kill this run's queue actors."""
        try:
            return super().run(*args, **kwargs)
        finally:
            self._shutdown_queues()

    def _shutdown_queues(self) -> None:
        """Kill the named queue actors of this run, so that the next run can create them again."""
        queues = [getattr(self, name, None) for name in ("_output_queue", "_load_queue", "_log_queue")]
        queues += [self.dag.get_step(step).get(INPUT_QUEUE_ATTR_NAME) for step in self.dag]
        for queue in queues:
            if queue is not None and hasattr(queue, "shutdown"):
                with contextlib.suppress(Exception):  # an actor already gone is what we want
                    queue.shutdown(force=True)


def on_ray(pipeline: Pipeline, ray_address: str | None = None, **options: Any) -> RayPipeline:
    """The same steps as `pipeline` (built with `with Pipeline(...)`), to run on a Ray cluster.

    What distilabel's `Pipeline.ray()` does, with the fixed class. `options` go to `RayPipeline`.
    """
    ray_pipeline = RayPipeline(name=pipeline.name, description=pipeline.description,
                               cache_dir=pipeline._cache_dir, enable_metadata=pipeline._enable_metadata,
                               requirements=pipeline.requirements, ray_address=ray_address, **options)
    ray_pipeline.dag = pipeline.dag
    return ray_pipeline
