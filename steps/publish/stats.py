"""What the card reports about the data, computed with polars from the repository folder alone.

Everything here reads the folder (`data/<config>/*.parquet`, `funnel.parquet`), never the pipeline,
so a card can be rendered again for any folder, e.g. after a review added the `reviewed` config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import track

from steps.publish.tokens import TokenCounter
from steps.repo_folder import DATA_DIR, FAILURES, FUNNEL_FILE, REVIEWED, config_file, configs
from steps.rows import ROW_SCHEMA

FUNNEL_BRACKETS = {"generation", "input", "output"}  # funnel stages that are not removals
PROVENANCE = ["flow", "skill", "subcategory", "agent_model", "teacher_model", "generation_params"]
MEASURES = ["turns", "prompt_chars", "response_chars", "prompt_tokens", "response_tokens"]
LENGTHS_SCHEMA = {**dict.fromkeys(["config", *PROVENANCE], pl.String), **dict.fromkeys(MEASURES, pl.Int64)}


def row_configs(repo_dir: Path) -> list[str]:
    """Configs whose rows are conversations (they have `messages`), i.e. all but `failures`."""
    return [c for c in configs(repo_dir) if "messages" in pq.read_schema(config_file(repo_dir, c)).names]


def default_configs(repo_dir: Path) -> list[str]:
    """The configs that `load_dataset(repo)` concatenates.

    Every row config that has all of ROW_SCHEMA's columns (extra columns, e.g. Magpie's tags, are
    left out of `default` by its `columns` list), except `reviewed`, whose rows repeat rows of
    the others.
    """
    return [c for c in row_configs(repo_dir) if c != REVIEWED and has_row_columns(repo_dir, c)]


def has_row_columns(repo_dir: Path, config: str) -> bool:
    """Whether `config` holds every ROW_SCHEMA column with ROW_SCHEMA's type."""
    schema = pq.read_schema(config_file(repo_dir, config))
    return all(name in schema.names and schema.field(name).type == field.type
               for name, field in zip(ROW_SCHEMA.names, ROW_SCHEMA, strict=True))


def extra_columns(repo_dir: Path, config: str) -> list[str]:
    """The columns of `config` beyond ROW_SCHEMA's."""
    return [n for n in pq.read_schema(config_file(repo_dir, config)).names if n not in ROW_SCHEMA.names]


def row_lengths(repo_dir: Path, config_names: list[str], counter: TokenCounter) -> pl.DataFrame:
    """One row per dataset row: config, provenance, turns, prompt/response chars and tokens.

    Prompt = system and user turns; response = assistant turns.
    """
    frames = [pl.DataFrame(schema=LENGTHS_SCHEMA)]
    # Off a terminal the transient bar shows nothing yet leaves a blank line (rich's Progress.stop).
    console = Console()
    for config in track(config_names, description="Measuring row lengths", transient=True,
                        console=console, disable=not console.is_interactive):
        path = config_file(repo_dir, config)
        present = [c for c in PROVENANCE if c in pq.read_schema(path).names]
        rows = (
            pl.read_parquet(path, columns=["messages", *present]).with_row_index("row")
            .with_columns(pl.lit(None, pl.String).alias(c) for c in PROVENANCE if c not in present)
        )
        turns = (
            rows.select("row", "messages").explode("messages").unnest("messages")
            .filter(pl.col("role").is_not_null())
            .with_columns(
                response=pl.col("role") == "assistant",
                chars=pl.col("content").fill_null("").str.len_chars().cast(pl.Int64),
                tokens=counter.expr("content"),
            )
        )
        per_row = turns.group_by("row").agg(
            turns=pl.len().cast(pl.Int64),
            prompt_chars=pl.col("chars").filter(~pl.col("response")).sum(),
            response_chars=pl.col("chars").filter(pl.col("response")).sum(),
            prompt_tokens=pl.col("tokens").filter(~pl.col("response")).sum(),
            response_tokens=pl.col("tokens").filter(pl.col("response")).sum(),
        )
        frames.append(
            rows.with_columns(config=pl.lit(config)).join(per_row, on="row", how="left")
            .with_columns(pl.col(MEASURES).fill_null(0))
            .select(list(LENGTHS_SCHEMA))
        )
    return pl.concat(frames)


def length_table(lengths: pl.DataFrame) -> list[dict[str, Any]]:
    """Per config: rows, mean turns, and prompt/response token mean, median, p95 and max."""

    def describe(column: str) -> list[pl.Expr]:
        col = pl.col(column)
        return [col.mean().round(1).alias(f"{column}_mean"),
                col.median().round(1).alias(f"{column}_median"),
                col.quantile(0.95, "nearest").cast(pl.Int64).alias(f"{column}_p95"),
                col.max().alias(f"{column}_max")]

    aggs = [pl.len().alias("rows"), pl.col("turns").mean().round(2).alias("turns_mean"),
            *describe("prompt_tokens"), *describe("response_tokens"),
            pl.col("response_chars").mean().round(1).alias("response_chars_mean")]
    table = lengths.group_by("config").agg(aggs).sort("config")
    return table.to_dicts()


def composition(lengths: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows per (config, skill, subcategory), largest first within each config."""
    return (
        lengths.group_by("config", "skill", "subcategory").agg(rows=pl.len())
        .sort(["config", "rows", "subcategory"], descending=[False, True, False], nulls_last=True)
        .to_dicts()
    )


def funnel_summary(repo_dir: Path, rows_in_folder: dict[str, int]) -> dict[str, Any] | None:
    """The curation funnel (FUNNEL_SCHEMA conventions) per config, with its arithmetic checked.

    rows_in - removals must equal rows_out, and rows_out the rows the folder actually holds. A
    config with generation failures only (no input/output rows) had no curation stage.
    """
    path = repo_dir / FUNNEL_FILE
    if not path.exists():
        return None
    funnel = pl.read_parquet(path)
    stage = pl.col("stage")
    per_config = []
    for config in sorted(funnel["config"].unique().to_list()):
        part = funnel.filter(pl.col("config") == config)
        removals = part.filter(~stage.is_in(list(FUNNEL_BRACKETS))).sort("rows", descending=True)
        curated = part.filter(stage.is_in(["input", "output"])).height > 0
        rows_in = int(part.filter(stage == "input")["rows"].sum()) if curated else None
        rows_out = int(part.filter(stage == "output")["rows"].sum()) if curated else None
        removed = int(removals["rows"].sum())
        per_config.append({
            "config": config,
            "generation_failures": part.filter(stage == "generation").select("reason", "rows").to_dicts(),
            "rows_in": rows_in,
            "removals": removals.select("stage", "reason", "rows").to_dicts(),
            "removed": removed,
            "rows_out": rows_out,
            "rows_in_folder": rows_in_folder.get(config),
            # Without curation stages there is nothing to add up (only generation failures).
            "consistent": not curated or (rows_in - removed == rows_out
                                          and rows_in_folder.get(config) == rows_out),
        })
    by_reason = (
        funnel.filter(~stage.is_in(["input", "output"]))
        .group_by("stage", "reason").agg(pl.col("rows").sum())
        .sort(["stage", "rows"], descending=[False, True])
        .to_dicts()
    )
    return {"configs": per_config, "by_reason": by_reason,
            "stages": sorted(set(funnel.filter(~stage.is_in(list(FUNNEL_BRACKETS)))["stage"]))}


def failure_counts(repo_dir: Path) -> list[dict[str, Any]]:
    """Items that failed before becoming rows, counted by (flow, skill, stage, agent, reason)."""
    if FAILURES not in configs(repo_dir):
        return []
    keys = ["flow", "skill", "stage", "agent", "reason"]
    return (
        pl.read_parquet(config_file(repo_dir, FAILURES), columns=keys)
        .group_by(keys).agg(rows=pl.len())
        .sort(["rows", *keys], descending=[True, *[False] * len(keys)], nulls_last=True)
        .to_dicts()
    )


def examples(repo_dir: Path, config: str, count: int = 2, max_chars: int = 700) -> list[dict]:
    """The first `count` rows by id (stable across reruns), each message cut to `max_chars`."""
    rows = (
        pl.read_parquet(config_file(repo_dir, config), columns=["id", "subcategory", "messages"])
        .sort("id").head(count).to_dicts()
    )
    for row in rows:
        for message in row["messages"]:
            content = message["content"] or ""
            cut = len(content) - max_chars
            message["content"] = content if cut <= 0 else f"{content[:max_chars]} […{cut} more chars]"
    return rows


def data_glob(config: str) -> str:
    """The data_files pattern of one config, as the card's YAML lists it."""
    return f"{DATA_DIR}/{config}/train-*.parquet"
