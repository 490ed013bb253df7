"""The funnel (rows in, removed per stage and reason, rows out, per config) and summary stats.

The funnel follows FUNNEL_SCHEMA's conventions (steps/rows.py): stage "input"/"rows_in", one row
per (stage, reason) that removed rows, stage "output"/"rows_out"; rows_in - removals == rows_out.
Stats are computed with polars over per-row numbers kept during the scan (never the documents);
token counts use the embedded SmolLM2 tokenizer on a deterministic sample of kept rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from steps.curation.config import CurationConfig
from steps.curation.decisions import Decisions
from steps.curation.normalise import texts
from steps.publish.tokens import token_counter
from steps.repo_folder import FUNNEL_FILE
from steps.rows import FUNNEL_SCHEMA, to_table


def funnel_table(configs: list[str], config_of_row: np.ndarray, reason_of_row: np.ndarray,
                 reasons: list[tuple[str, str]], previous: pa.Table | None = None) -> pa.Table:
    """Funnel rows for every config; `previous` contributes its "generation" rows unchanged."""
    rows: list[dict[str, Any]] = []
    if previous is not None:
        rows += [r for r in previous.to_pylist() if r["stage"] == "generation"]
    for c, config in enumerate(configs):
        mine = reason_of_row[config_of_row == c]
        counts = np.bincount(mine[mine >= 0], minlength=len(reasons))
        rows.append({"config": config, "stage": "input", "reason": "rows_in", "rows": len(mine)})
        rows += [{"config": config, "stage": stage, "reason": reason, "rows": int(counts[r])}
                 for r, (stage, reason) in enumerate(reasons) if counts[r]]
        rows.append({"config": config, "stage": "output", "reason": "rows_out",
                     "rows": int((mine < 0).sum())})
    return to_table(rows, FUNNEL_SCHEMA)


def read_previous_funnel(repo_dir: Path | None) -> pa.Table | None:
    """The funnel a previous curation left in `repo_dir`, or None."""
    path = repo_dir / FUNNEL_FILE if repo_dir else None
    return pq.read_table(path) if path is not None and path.exists() else None


def _describe(values: pl.Series) -> dict[str, float | int | None]:
    if values.len() == 0:
        return {"mean": None, "p50": None, "p90": None, "max": None}
    return {"mean": round(float(values.mean()), 2), "p50": float(values.quantile(0.5)),
            "p90": float(values.quantile(0.9)), "max": int(values.max())}


def summary(frame: pl.DataFrame) -> dict[str, Any]:
    """Stats of the kept rows. `frame`: config, skill, words, turns (+ tokens, sampled, nullable)."""
    per_config: dict[str, Any] = {}
    for (config,), rows in frame.group_by("config", maintain_order=True):
        skills = rows.get_column("skill").drop_nulls().value_counts(sort=True)
        tokens = rows.get_column("tokens").drop_nulls()
        per_config[str(config)] = {
            "rows": rows.height,
            "words": _describe(rows.get_column("words")),
            "turns": _describe(rows.get_column("turns")),
            "tokens": {**_describe(tokens), "sampled_rows": tokens.len()},
            "skills": dict(zip(skills.get_column("skill").to_list(),
                               skills.get_column("count").to_list(), strict=True)),
        }
    return per_config


def token_counts(strings: list[str]) -> list[int]:
    """Tokens per text with the embedded model's tokenizer (whitespace words without it)."""
    counter = token_counter()
    return [counter.count(t) if counter.count else len(t.split()) for t in strings]


def _sampled_tokens(decisions: Decisions, config: CurationConfig,
                    columns: dict[str, list[str]]) -> np.ndarray:
    """Tokens of the user+assistant text of up to `token_sample` kept rows per config, -1 for the rest.

    The sample is the rows of smallest text hash: deterministic, whatever the row order.
    """
    tokens = np.full(len(decisions.reason), -1, dtype=np.int64)
    kept = decisions.reason < 0
    for c, source in enumerate(decisions.inputs):
        mine = np.flatnonzero(kept & (decisions.config_of_row == c))
        sample = np.sort(mine[np.argsort(decisions.text_keys[mine], kind="stable")
                              [:config.token_sample]])
        if len(sample):
            rows = source.rows(decisions.local_row[sample], columns[source.config])
            text = texts(rows, config.text_column, "conversation").dedup
            tokens[sample] = token_counts(text.to_pylist())
    return tokens


def curation_stats(decisions: Decisions, config: CurationConfig,
                   columns: dict[str, list[str]]) -> dict[str, Any]:
    """The content of stats.json.

    Per config the kept rows' words, turns, sampled tokens and skills, plus the decontamination
    report and near-dup pair counts.
    """
    kept = decisions.reason < 0
    names = np.array([i.config for i in decisions.inputs], dtype=object)
    frame = pl.DataFrame({
        "config": names[decisions.config_of_row[kept]].astype(str),
        "skill": decisions.skills.filter(pl.Series(kept)),
        "words": decisions.words[kept], "turns": decisions.turns[kept],
        "tokens": _sampled_tokens(decisions, config, columns)[kept],
    }).with_columns(tokens=pl.when(pl.col("tokens") >= 0).then(pl.col("tokens")))
    return {"configs": summary(frame), "decontamination": decisions.decontamination,
            "near_dup": decisions.near_dup_pairs, "config": config.model_dump(mode="json")}
