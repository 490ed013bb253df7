"""The curate recipe's options: what to curate, where to, and the CurationConfig fields.

Every field is a flag of `pipelines/curate.py` and a key of its recipe YAML (recipes/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from steps.curation.config import CurationConfig, load_skill_filters
from steps.recipe_config import RecipeConfig


class CurateConfig(RecipeConfig, CurationConfig):
    """Curate any chat or text dataset: inputs, output folder and every CurationConfig field.

    The row filters' flags have no prefix: --min-words, --languages…
    """

    recipe: ClassVar[str] = "curate"
    positional: ClassVar[tuple[str, ...]] = ("inputs",)
    flat: ClassVar[frozenset[str]] = frozenset({"filters"})
    flags: ClassVar[dict[str, str]] = {"output_dir": "--out"}

    inputs: list[str] = Field(min_length=1, description="Parquet files/globs, a dataset folder "
                              "or a Hub id")

    @field_validator("skill_filters", mode="before")
    @classmethod
    def _filters_file(cls, value: Any) -> Any:
        """On the command line `--skill-filters` names a YAML file: skill -> filter settings."""
        return load_skill_filters(Path(value)) if isinstance(value, str | Path) else value

    def curation(self) -> CurationConfig:
        """The CurationConfig part of the options."""
        return CurationConfig.model_validate(
            {name: getattr(self, name) for name in CurationConfig.model_fields})


