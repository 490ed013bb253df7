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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterConfig(_Strict):
    """Row filters of one skill. Words are counted by the dedup tokeniser over user+assistant."""

    min_words: int = Field(3, ge=0)
    max_words: Annotated[int, Field(ge=1)] | None = None
    languages: list[str] | None = None  # ISO 639-1 codes to keep (py3langid); None = no check
    refusal: bool = True  # drop assistant refusals and AI boilerplate
    format: Literal["json"] | None = None  # the last assistant turn must parse as this


class CurationConfig(_Strict):
    text_column: str | None = None  # read this plain-text column instead of `messages`
    dedup_on: DedupOn = "conversation"
    exact_dedup: bool = True
    near_dup: bool = True
    shingle_words: int = Field(5, ge=1)
    bands: int = Field(32, ge=1)
    rows_per_band: int = Field(8, ge=1)
    jaccard: float = Field(0.8, gt=0, le=1)  # verified exactly on the shingle sets
    embedding_dedup: bool = False  # Magpie rule on user turns (needs the `embeddings` extra)
    embedding_distance: float = Field(0.05, gt=0)  # squared L2 between unit vectors
    benchmarks: list[str] = []  # [NAME=]file|folder|org/name[:config]
    benchmark_field: str | None = None
    benchmark_split: str = "test"
    decontamination: Mode = "tulu"
    decontamination_ngram: int = Field(8, ge=1)
    filters: FilterConfig = FilterConfig()
    skill_filters: dict[str, FilterConfig] = {}
    batch_rows: int = Field(4096, ge=1)
    token_sample: int = Field(1000, ge=0)  # rows per config whose tokens are counted for stats

    def filters_for(self, skill: str | None) -> FilterConfig:
        return self.skill_filters.get(skill or "", self.filters)


def load_skill_filters(path: Path) -> dict[str, FilterConfig]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return {str(skill): FilterConfig(**values) for skill, values in raw.items()}
    except (OSError, yaml.YAMLError, TypeError, AttributeError, ValidationError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--skill-filters {path}: {first}") from None
