"""Filter presets that reproduce the thresholds of the Magpie filtered releases.

Thresholds from the Magpie-Air/Pro-300K-Filtered dataset cards and magpie-align/magpie
`data_sft/data_filter.ipynb`:

    air-300k-filtered   quality >= good, difficulty >= medium, min-neighbour distance > 0,
                        reward - base reward > 0, the 300K longest responses
    pro-300k-filtered   quality >= average, min-neighbour distance > 0, reward > -12, 300K longest
    later               quality >= good, reward > -10, instruction not ending in ":",
                        one row per duplicate cluster (longest N only with keep_longest)

Criteria run in that order with polars and each removal is counted under its reason in the
funnel (FUNNEL_SCHEMA). Rows whose column is null (an untagged row) are removed as
`no_<column>`. A criterion whose column is absent or entirely null is not applied and says why:
no reward model was configured, or the embedding-dedup columns (`min_neighbor_distance`,
`min_similar_id`, from steps.curation) were never computed. Nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from steps.errors import UserError
from steps.magpie.rows import CONFIG
from steps.magpie.tagging import load_tag_scales
from steps.rows import FUNNEL_SCHEMA, to_table


def _at_least(column: str, levels: list[str], level: str) -> pl.Expr:
    return pl.col(column).is_in(levels[levels.index(level):])


def _instruction() -> pl.Expr:
    user = pl.element().struct.field("role") == "user"
    return (pl.col("messages").list.eval(pl.element().filter(user).struct.field("content"))
            .list.first())


def _response_chars() -> pl.Expr:
    assistant = pl.element().struct.field("role") == "assistant"
    content = pl.element().struct.field("content").str.len_chars()
    return pl.col("messages").list.eval(pl.when(assistant).then(content).otherwise(0)).list.sum()


@dataclass(frozen=True)
class Criterion:
    """One filter of a preset: a polars keep-expression and the funnel reason of its removals."""

    reason: str  # the funnel reason of its removals
    columns: tuple[str, ...]  # must exist with some non-null value, else not applied
    keep: Callable[[], pl.Expr]
    missing: str  # why it is not applied when its columns are absent


def quality_at_least(level: str) -> Criterion:
    """Keep rows whose `input_quality` tag is `level` or better."""
    levels = list(load_tag_scales().input_quality)
    return Criterion(f"input_quality<{level}", ("input_quality",),
                     lambda: _at_least("input_quality", levels, level), "no tags (run with --tag)")


def difficulty_at_least(level: str) -> Criterion:
    """Keep rows whose `difficulty` tag is `level` or harder."""
    levels = load_tag_scales().difficulty
    return Criterion(f"difficulty<{level}", ("difficulty",),
                     lambda: _at_least("difficulty", levels, level), "no tags (run with --tag)")


def reward_above(threshold: float) -> Criterion:
    """Keep rows whose `reward` is above `threshold`."""
    return Criterion(f"reward<={threshold:g}", ("reward",),
                     lambda: pl.col("reward") > threshold, "no reward model")


DISTANCE = Criterion("min_neighbor_distance<=0", ("min_neighbor_distance",),
                     lambda: pl.col("min_neighbor_distance") > 0,
                     "embedding dedup not run (steps.curation)")
REWARD_GAIN = Criterion("reward<=base_reward", ("reward", "base_reward"),
                        lambda: pl.col("reward") - pl.col("base_reward") > 0,
                        "no reward model or no base-model reward")
NO_COLON = Criterion("instruction_ends_with_colon", (),
                     lambda: ~_instruction().str.strip_chars().str.ends_with(":"), "")
ONE_PER_CLUSTER = Criterion("duplicate_in_cluster", ("min_similar_id",),
                            lambda: pl.col("min_similar_id").is_null()
                            | (pl.col("min_similar_id") == pl.col("id")),
                            "embedding dedup not run (steps.curation)")


@dataclass(frozen=True)
class Preset:
    """A filtered release's criteria, and its "longest N" applied last."""

    criteria: list[Criterion]
    longest: int | None = None  # keep the N rows with the longest responses, last


def presets() -> dict[str, Preset]:
    """The presets by name: the Magpie-Air/Pro-300K-Filtered releases and the later cards' rule."""
    return {
        "air-300k-filtered": Preset(
            [quality_at_least("good"), difficulty_at_least("medium"), DISTANCE, REWARD_GAIN],
            longest=300_000),
        "pro-300k-filtered": Preset(
            [quality_at_least("average"), DISTANCE, reward_above(-12)], longest=300_000),
        "later": Preset([quality_at_least("good"), reward_above(-10), NO_COLON, ONE_PER_CLUSTER]),
    }


@dataclass(frozen=True)
class FilterResult:
    """The rows a preset kept, its funnel, and the criteria it could not apply."""

    table: pa.Table
    funnel: pa.Table  # FUNNEL_SCHEMA: rows_in, one row per criterion, rows_out
    not_applied: list[str]  # "criterion: why", also in the funnel with 0 rows


def apply_preset(table: pa.Table, name: str, keep_longest: int | None = None,
                 config: str = CONFIG) -> FilterResult:
    """Filter `table` (MAGPIE_SCHEMA, plus curation columns if any) with preset `name`.

    `keep_longest` overrides the preset's "longest N" (0: keep all).
    """
    known = presets()
    if name not in known:
        raise UserError(f"--filter {name!r}: unknown preset; known: {', '.join(known)}")
    preset = known[name]
    stage = f"magpie_filter:{name}"
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    funnel = [{"config": config, "stage": "input", "reason": "rows_in", "rows": frame.height}]
    not_applied = []

    def remove(reason: str, kept: pl.DataFrame) -> None:
        nonlocal frame
        funnel.append({"config": config, "stage": stage, "reason": reason,
                       "rows": frame.height - kept.height})
        frame = kept

    for criterion in preset.criteria:
        absent = [c for c in criterion.columns
                  if c not in frame.columns or frame.get_column(c).null_count() == frame.height]
        if absent:
            not_applied.append(f"{criterion.reason}: {criterion.missing}")
            funnel.append({"config": config, "stage": stage, "rows": 0,
                           "reason": f"not_applied:{criterion.reason} ({criterion.missing})"})
            continue
        for column in criterion.columns:
            remove(f"no_{column}", frame.filter(pl.col(column).is_not_null()))
        remove(criterion.reason, frame.filter(criterion.keep().fill_null(False)))
    longest = preset.longest if keep_longest is None else keep_longest or None
    if longest is not None:  # the longest responses, in their original order
        ranked = frame.with_row_index("_row").sort(_response_chars(), descending=True,
                                                   maintain_order=True)
        remove(f"not_in_longest_{longest}", ranked.head(longest).sort("_row").drop("_row"))
    funnel.append({"config": config, "stage": "output", "reason": "rows_out",
                   "rows": frame.height})
    return FilterResult(frame.to_arrow().cast(table.schema), to_table(funnel, FUNNEL_SCHEMA),
                        not_applied)
