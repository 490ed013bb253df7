"""The orca3_mix recipe's options: AgentInstruct's three flows over the taxonomy's skills.

Every field is a flag of `pipelines/orca3_mix.py` and a key of its recipe YAML (recipes/).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from steps import DATA_ROOT
from steps.cluster import ClusterOptions
from steps.engines import ENGINE_FORMS
from steps.recipe_config import RecipeConfig, run_option
from steps.serving import ServingOptions

SAMPLE_SEEDS = DATA_ROOT / "seeds" / "sample"


class Orca3MixConfig(RecipeConfig, ClusterOptions, ServingOptions):
    """AgentInstruct's three flows and teacher (Mitra et al. 2024, arXiv 2407.03502).

    seeds -> content transformation -> seed instructions -> (suggester -> editor) x rounds ->
    teacher, per skill of the taxonomy.
    """

    recipe: ClassVar[str] = "orca3_mix"

    seeds: str | None = Field(None, description="seed documents: a folder of text/code files, "
                              "a .jsonl/.parquet file, or a Hub dataset id (default: the bundled "
                              "sample seeds, seeds/sample)")
    text_column: str | None = Field(None, description="text column of a tabular seed source")
    taxonomy: Path | None = Field(None, description="a folder of skill YAML files to use instead "
                                  "of the bundled AgentInstruct taxonomy")
    skills: list[str] | None = Field(None, description="skill ids or split names, e.g. rc,code_ "
                                     "(default: every skill of the taxonomy)")
    rows: int = Field(68, ge=1, description="rows to make in total")
    mix: dict[str, float] = Field({}, description="per-skill weights, e.g. rc=2,code_=0.5 "
                                  "(unnamed skills weigh 1)")
    agent_llm: str = Field("embedded", description=f"engine of the flow agents: {ENGINE_FORMS}")
    teacher: str = Field("embedded", description="engine that answers the tasks (same specs)")
    agent_temperature: float = Field(0.7, ge=0, description="sampling temperature of the agents")
    teacher_temperature: float = Field(0.0, ge=0, description="sampling temperature of the teacher")
    agent_max_tokens: int = Field(512, ge=1, description="new tokens per agent reply")
    teacher_max_tokens: int = Field(256, ge=1, description="new tokens per teacher reply")
    magpie_share: float = Field(0.0, ge=0, lt=1, description="fraction of --rows made by Magpie "
                                "from the teacher (config `magpie`)")
    tasks_per_item: int = Field(2, ge=1, description="tasks each seed-instruction agent writes "
                                "per passage")
    refinement_rounds: int = Field(1, ge=0, description="suggester/editor rounds per task")
    benchmarks: list[str] = Field([], description="decontaminate against these benchmark sets: "
                                  "[NAME=]file|folder|Hub id")
    curate: bool = Field(True, description="curate the rows: filters, decontamination, dedup")
    seed: int = Field(42, description="the run seed: plan and sampling (same seed, same rows)")
    batch_size: int = run_option(4, ge=1, description="work items per distilabel batch")

    @property
    def seed_source(self) -> str:
        """Where the seeds come from: `seeds`, or the bundled sample seeds."""
        return self.seeds or str(SAMPLE_SEEDS)
