"""The rest_em recipe's options (Singh et al. 2023, arXiv 2312.06585, §3 and §4).

Every field is a flag of `pipelines/rest_em.py` and a key of its recipe YAML (recipes/).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import Field, model_validator

from steps.cluster import ClusterOptions
from steps.engines import ENGINE_FORMS
from steps.errors import UserError
from steps.recipe_config import RecipeConfig
from steps.serving import ServingOptions

# ReST-EM keeps no checkpoints: a capped run's rerun samples every problem again.
RERUN_STARTS_OVER = "ReST-EM keeps no checkpoints: a rerun (with a higher cap) starts over"


class RestEmConfig(RecipeConfig, ClusterOptions, ServingOptions):
    """ReST-EM's options: E-step sampling and selection, M-step training and iterations.

    Sample k solutions per problem, keep at most N verified ones (E-step), fine-tune the base
    model on them (M-step, `train`), repeat for `iterations`.
    """

    recipe: ClassVar[str] = "rest_em"
    cap_rerun: ClassVar[str] = RERUN_STARTS_OVER
    caps_on_ray: ClassVar[bool] = False  # the E-step's scorers report tokens through a file

    problems: str = Field("generate:arithmetic", description="a .jsonl/.parquet problems file "
                          "(question + answer or tests), or generate:arithmetic[:MIN-MAX] (MIN to MAX steps)")
    count: int = Field(200, ge=1, description="problems made by generate:arithmetic")
    engine: str = Field("embedded", description=f"the model that samples: {ENGINE_FORMS}")
    k: int = Field(32, ge=1, description="solutions sampled per problem (paper: 32 math, 64 code)")
    max_per_problem: int = Field(10, ge=1, description="correct solutions kept per problem "
                                 "(paper: 10)")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (paper: 0.7)")
    top_k: int = Field(40, ge=0, description="top-k sampling (paper: 40)")
    max_new_tokens: int = Field(256, ge=1, description="new tokens per solution")
    heldout_fraction: float = Field(0.2, ge=0, lt=1, description="problems kept apart for "
                                    "reporting pass@1, pass@k and majority vote (never for choices)")
    iterations: int = Field(1, ge=1, le=3, description="M-steps to run with --train (the paper's "
                            "gains stop after about 3; code regresses after 1)")
    train: bool = Field(False, description="run the M-step (needs the [train] extra)")
    seed: int = Field(0, description="the run seed")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="with --train: share of the "
                                       "non-held-out problems kept apart to pick the M-step's "
                                       "epoch and stop iterating")

    @model_validator(mode="after")
    def _iterations_need_training(self) -> Self:
        if self.iterations > 1 and not self.train:
            raise UserError("--iterations > 1 needs --train (without a new model every "
                            "iteration would sample the same distribution)")
        return self

    @property
    def sampling(self) -> dict[str, Any]:
        """The E-step's sampling settings (steps.rest_em.estep.run_estep's `sampling`)."""
        return {"temperature": self.temperature, "top_k": self.top_k}
