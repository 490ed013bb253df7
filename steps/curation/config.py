"""What curation does, as one validated object (the CLI and the lead's pipeline both build one).

Per-skill filter settings live in `skill_filters` (skill id -> FilterConfig) and fall back to
`filters`; `load_skill_filters` reads them from YAML (`skill: {min_words: 20, format: json}`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.curation.decontaminate import Mode
from steps.curation.normalise import DedupOn
from steps.errors import UserError
from steps.recipe_config import run_option


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterConfig(_Strict):
    """Row filters of one skill. Words are counted by the dedup tokeniser over user+assistant."""

    min_words: int = Field(3, ge=0, description="drop rows with fewer words")
    max_words: Annotated[int, Field(ge=1)] | None = Field(None, description="drop rows with more "
                                                          "words")
    languages: list[str] | None = Field(None, description="ISO 639-1 codes to keep (needs "
                                        "py3langid, extra `lang`; default: no language check)")
    refusal: bool = Field(True, description="drop assistant refusals and AI boilerplate")
    format: Literal["json"] | None = Field(None, description="the last assistant turn must parse "
                                           "as this")


class CurationConfig(_Strict):
    """What curation does.

    Filters -> decontamination -> exact dedup -> near-dup (-> embedding dedup), each stage counted in the
    funnel (steps.curation.run).
    """

    text_column: str | None = Field(None, description="curate this plain-text column instead of "
                                    "`messages`")
    dedup_on: DedupOn = Field("conversation", description="text compared by exact and near-dup: "
                              "user+assistant turns, or user turns only")
    exact_dedup: bool = Field(True, description="remove exact duplicates (normalised text)")
    near_dup: bool = Field(True, description="remove near-duplicates (MinHash LSH, verified "
                           "Jaccard)")
    shingle_words: int = Field(5, ge=1, description="word n-gram size of the shingles")
    bands: int = Field(32, ge=1, description="LSH bands")
    rows_per_band: int = Field(8, ge=1, description="MinHash rows per LSH band")
    jaccard: float = Field(0.8, gt=0, le=1, description="near-dup threshold, verified exactly on "
                           "the shingle sets")
    embedding_dedup: bool = Field(False, description="Magpie's embedding rule on user turns "
                                  "(extra `embeddings`)")
    embedding_distance: float = Field(0.05, gt=0, description="embedding dedup threshold: "
                                      "squared L2 between unit vectors")
    benchmarks: list[str] = Field([], description="benchmark sets to decontaminate against: "
                                  "[NAME=]file|folder|org/name[:config]")
    benchmark_field: str | None = Field(None, description="benchmark item text column "
                                        "(default: guessed)")
    benchmark_split: str = Field("test", description="split of Hub benchmarks")
    decontamination: Mode = Field("tulu", description="tulu: shared 8-grams cover over half of "
                                  "an item's words; strict: any shared 8-gram")
    decontamination_ngram: int = Field(8, ge=1, description="n-gram size of decontamination")
    filters: FilterConfig = Field(FilterConfig(), description="row filters")
    skill_filters: dict[str, FilterConfig] = Field({}, description="per-skill filters (skill -> "
                                                   "filter settings)")
    batch_rows: int = run_option(4096, ge=1, description="rows per streamed batch")
    token_sample: int = run_option(1000, ge=0, description="rows per config whose tokens are "
                                   "counted for stats")

    def filters_for(self, skill: str | None) -> FilterConfig:
        """The filters of a skill: its own from `skill_filters`, else the defaults."""
        return self.skill_filters.get(skill or "", self.filters)


def load_skill_filters(path: Path) -> dict[str, FilterConfig]:
    """Per-skill filter settings from a YAML file {skill: FilterConfig fields}.

    Raises:
        UserError: the file cannot be read or a value is invalid (`--skill-filters`).
    """
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return {str(skill): FilterConfig(**values) for skill, values in raw.items()}
    except (OSError, yaml.YAMLError, TypeError, AttributeError, ValidationError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--skill-filters {path}: {first}") from None
