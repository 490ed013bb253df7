"""The curation run, `curate()`.

Filters, decontamination, exact dedup, near-dup (and optional embedding dedup) over Parquet inputs, streaming,
then the curated folder with its funnel and stats.

Stages remove rows in this order, each seeing only the survivors of the ones before, so every row
is counted once, by the first reason that applies: filter -> decontamination -> exact_dedup ->
near_dup -> embedding_dedup. Dedup runs last so that a cluster's kept row is never one a filter
would drop anyway.

Passes over the input (each a polars lazy scan read in row batches; only per-row numbers, band
keys spilled to disk and the shingle sets of near-dup candidates are kept between them):
1. texts -> filters, decontamination, text hash, LSH band keys;
2. near-dup candidates only -> exact Jaccard of candidate pairs (skipped without candidates);
3. kept rows -> output configs (streaming sink), then funnel.parquet, removed.parquet, stats.json.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from steps.curation import embedding_dedup, near_dup
from steps.curation.benchmark_sets import check_benchmarks, load_benchmark
from steps.curation.clusters import ranks, representatives
from steps.curation.config import CurationConfig
from steps.curation.decisions import Decisions, removed_table
from steps.curation.decontaminate import (
    BenchmarkIndex,
    ContaminationReport,
    Overlaps,
    best_item_per_row,
    overlaps,
)
from steps.curation.filters import FILTER_REASONS, filter_reasons
from steps.curation.funnel import curation_stats, funnel_table, read_previous_funnel
from steps.curation.ngrams import Words, mark_negations, ngrams, words
from steps.curation.normalise import input_columns, texts, to_arrow
from steps.curation.sources import ConfigInput, check_text_column, repo_folder_of, resolve_inputs
from steps.errors import UserError
from steps.repo_folder import DATA_DIR, FUNNEL_FILE, STATS_FILE, write_json

REMOVED_FILE = "removed.parquet"


def _dedups(config: CurationConfig) -> bool:
    """Whether a dedup stage runs: only then is every row's `id` held (for the keep rule)."""
    return config.exact_dedup or config.near_dup or config.embedding_dedup


def _progress(enabled: bool) -> Progress:
    return Progress(disable=not enabled, transient=True)


def _curated_inputs(inputs: list[ConfigInput], config: CurationConfig
                    ) -> tuple[list[ConfigInput], list[ConfigInput], dict[str, list[str]]]:
    """Split inputs into those with the text to curate and those without (e.g. `failures`)."""
    curated, skipped, columns = [], [], {}
    for source in inputs:
        schema = source.schema()
        try:
            columns[source.config] = input_columns(schema, config.text_column, ids=_dedups(config))
        except KeyError:
            skipped.append(source)
            continue
        check_text_column(source, columns[source.config][0], schema)
        curated.append(source)
    if not curated:
        wanted = f"column {config.text_column!r}" if config.text_column else "a `messages` column"
        raise UserError(f"input: no config has {wanted}; pass --text-column NAME for plain text")
    return curated, skipped, columns


def _decontaminate_batch(index: BenchmarkIndex, report: ContaminationReport, tokens: Words,
                         reason: np.ndarray, config: CurationConfig
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Flag the rows still kept that leak a benchmark item.

    Sets `reason`, returns the item index and the matched share of that item per row (-1 and NaN
    elsewhere).
    """
    n = len(reason)
    item = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    found = overlaps(index, tokens, config.decontamination)
    alive = reason[found.row] < 0
    found = Overlaps(found.row[alive], found.item[alive], found.coverage[alive])
    rows, items, coverage = best_item_per_row(index, found, tokens)
    set_of_row = index.item_set[items]
    report.add(items, set_of_row)
    reason[rows] = len(FILTER_REASONS) + set_of_row
    item[rows] = index.item_local[items]
    similarity[rows] = coverage
    return item, similarity


def _scan_batch(batch: pl.DataFrame, config: CurationConfig, index: BenchmarkIndex | None,
                report: ContaminationReport | None, store: near_dup.BandStore | None
                ) -> dict[str, Any]:
    """Pass 1 on one batch: the per-row numbers kept for the global decisions (no documents)."""
    n = batch.height
    text = texts(batch, config.text_column, config.dedup_on)
    tokens = words(text.dedup)
    reason = filter_reasons(batch, text, tokens.word_counts, config)
    item, similarity = np.full(n, -1, dtype=np.int64), np.full(n, np.nan, dtype=np.float32)
    if index is not None and report is not None:  # every turn: a leak in an answer is a leak
        scanned = tokens if text.conversation is text.dedup else words(text.conversation)
        item, similarity = _decontaminate_batch(index, report, scanned, reason, config)
    if store is not None:
        grams, offsets = ngrams(tokens, config.shingle_words, short_as_one=True)
        store.append(near_dup.band_keys(grams, offsets, config.bands, config.rows_per_band))
    return {
        "reason": reason, "item": item, "similarity": similarity, "keys": tokens.text_keys,
        "words": tokens.word_counts.astype(np.uint32), "turns": text.turns,
        "ids": to_arrow(batch.get_column("id").cast(pl.String)) if "id" in batch.columns else None,
        "skills": (batch.get_column("skill").cast(pl.String) if "skill" in batch.columns
                   else pl.Series("skill", [None] * n, pl.String)),
    }


def analyse(inputs: list[ConfigInput], config: CurationConfig, progress: bool = True) -> Decisions:
    """Passes 1 and 2: decide, for every row, whether it is kept and why not."""
    inputs, _, columns = _curated_inputs(inputs, config)
    sets = [load_benchmark(spec, config.benchmark_field, config.benchmark_split)
            for spec in config.benchmarks]
    index = BenchmarkIndex.build(sets, config.decontamination_ngram) if sets else None
    report = ContaminationReport(index) if index else None
    reasons = [("filter", name) for name in FILTER_REASONS]
    reasons += [("decontamination", f"benchmark:{s.name}") for s in sets]
    reasons += [("exact_dedup", "exact_duplicate"), ("near_dup", "minhash_jaccard"),
                ("embedding_dedup", "embedding_distance")]
    store = near_dup.BandStore(config.bands) if config.near_dup else None
    parts: dict[str, list[Any]] = defaultdict(list)
    total = sum(s.scan().select(pl.len()).collect().item() for s in inputs)
    if total == 0:
        raise UserError(f"input {inputs[0].files[0]}: no rows to curate")
    try:
        with _progress(progress) as bar:
            task = bar.add_task("curation: scan", total=total)
            for c, source in enumerate(inputs):
                position = 0
                for batch in source.batches(columns[source.config], config.batch_rows):
                    for name, values in _scan_batch(batch, config, index, report, store).items():
                        parts[name].append(values)
                    parts["config"].append(np.full(batch.height, c, dtype=np.int16))
                    parts["local"].append(np.arange(position, position + batch.height))
                    position += batch.height
                    bar.advance(task, batch.height)
        id_parts = parts.pop("ids")
        ids = (pa.chunked_array(id_parts, pa.large_string())
               if all(a is not None for a in id_parts) else None)
        skills = pl.concat(parts.pop("skills"))
        joined = {name: np.concatenate(values) for name, values in parts.items()}
        decisions = Decisions(
            inputs, reasons, joined["config"], joined["local"], joined["reason"],
            np.full(len(joined["reason"]), -1, dtype=np.int64), joined["item"],
            joined["similarity"], joined["keys"], joined["words"], joined["turns"], ids, skills)
        rank = ranks(ids, decisions.text_keys) if _dedups(config) else np.zeros(0, np.int64)
        if config.exact_dedup:
            _exact_dedup(decisions, rank)
        if store is not None:
            _near_dup(decisions, rank, store, config, columns, progress)
    finally:
        if store is not None:
            store.close()
    if config.embedding_dedup:
        _embedding_dedup(decisions, rank, config, columns)
    _point_at_kept_rows(decisions)
    if report is not None:
        decisions.decontamination = report.as_dict(len(decisions.reason))
    return decisions


def _point_at_kept_rows(decisions: Decisions) -> None:
    """Point exact copies of a row removed later at the row that one names.

    The copy takes that row's similarity too (equal texts have equal similarities). One hop
    only: the named row was a verified duplicate of the removed one, not necessarily of the row
    it names.
    """
    exact = decisions.code("exact_dedup", "exact_duplicate")
    dup = decisions.duplicate_of
    copies = np.flatnonzero(decisions.reason == exact)
    target = dup[copies]
    moved = dup[target] >= 0
    copies, target = copies[moved], target[moved]
    dup[copies] = dup[target]
    decisions.similarity[copies] = decisions.similarity[target]


def _exact_dedup(decisions: Decisions, rank: np.ndarray) -> None:
    alive = np.flatnonzero(decisions.reason < 0)
    kept = alive[representatives(decisions.text_keys[alive], rank[alive])]
    removed = kept != alive
    decisions.reason[alive[removed]] = decisions.code("exact_dedup", "exact_duplicate")
    decisions.duplicate_of[alive[removed]] = kept[removed]
    decisions.similarity[alive[removed]] = 1.0


def _candidate_sets(decisions: Decisions, candidates: np.ndarray, config: CurationConfig,
                    columns: dict[str, list[str]], progress: bool) -> near_dup.ShingleSets:
    """Pass 2: the exact shingle sets and token flags of the candidate rows, read again."""
    found = []
    start = 0
    with _progress(progress) as bar:
        task = bar.add_task("curation: verify near-dups", total=len(decisions.reason))
        for source in decisions.inputs:
            for batch in source.batches(columns[source.config][:1], config.batch_rows):
                stop = start + batch.height
                lo, hi = np.searchsorted(candidates, [start, stop])
                if hi > lo:
                    chosen = batch[candidates[lo:hi] - start]
                    tokens = words(texts(chosen, config.text_column, config.dedup_on).dedup)
                    mark_negations(tokens)
                    grams, offsets = ngrams(tokens, config.shingle_words, short_as_one=True)
                    found.append(near_dup.shingle_parts(tokens, grams, offsets))
                bar.advance(task, batch.height)
                start = stop
    return near_dup.ShingleSets.build(candidates, found)


def _near_dup(decisions: Decisions, rank: np.ndarray, store: near_dup.BandStore,
              config: CurationConfig, columns: dict[str, list[str]], progress: bool) -> None:
    eligible = (decisions.reason < 0) & (decisions.words > 0)
    pairs, oversized = store.candidate_pairs(eligible)
    decisions.near_dup_pairs = {"candidate_pairs": len(pairs), "above_threshold": 0,
                                "kept_apart_by_content": 0, "verified_pairs": 0,
                                "oversized_bucket_rows": oversized}
    if len(pairs) == 0:
        return
    sets = _candidate_sets(decisions, np.unique(pairs), config, columns, progress)
    jaccard = sets.jaccard(pairs)
    above = jaccard >= config.jaccard
    apart = np.zeros(len(pairs), dtype=bool)
    apart[above] = sets.differs(pairs[above], config.shingle_words)
    verified = above & ~apart
    decisions.near_dup_pairs |= {"above_threshold": int(above.sum()),
                                 "kept_apart_by_content": int(apart.sum()),
                                 "verified_pairs": int(verified.sum())}
    duplicate_of, similarity = near_dup.keep_greedy(len(decisions.reason), pairs[verified],
                                                    jaccard[verified], rank)
    removed = np.flatnonzero(duplicate_of >= 0)
    decisions.reason[removed] = decisions.code("near_dup", "minhash_jaccard")
    decisions.duplicate_of[removed] = duplicate_of[removed]
    decisions.similarity[removed] = similarity[removed]


def _embedding_dedup(decisions: Decisions, rank: np.ndarray, config: CurationConfig,
                     columns: dict[str, list[str]]) -> None:
    """Magpie's rule on the user turns of the rows still kept (O(rows²), see embedding_dedup)."""
    alive = np.flatnonzero(decisions.reason < 0)
    user: list[str] = []
    for c, source in enumerate(decisions.inputs):
        mine = decisions.local_row[alive[decisions.config_of_row[alive] == c]]
        if len(mine):
            rows = source.rows(mine, columns[source.config])
            user += texts(rows, config.text_column, config.dedup_on).user.to_pylist()
    vectors = embedding_dedup.embed(user)
    neighbour = embedding_dedup.smaller_rank_neighbour(vectors, rank[alive], config.embedding_distance)
    removed = neighbour >= 0
    decisions.reason[alive[removed]] = decisions.code("embedding_dedup", "embedding_distance")
    decisions.duplicate_of[alive[removed]] = alive[neighbour[removed]]
    decisions.similarity[alive[removed]] = np.einsum(
        "ij,ij->i", vectors[removed], vectors[neighbour[removed]])


def curate(inputs: str | Path | list[str | Path], out_dir: str | Path,
           config: CurationConfig | None = None, progress: bool = True) -> pa.Table:
    """Curate `inputs` (Parquet files/globs, a dataset folder, or Hub ids) into `out_dir`.

    `out_dir` is a dataset folder and may be the input folder (configs are replaced atomically).

    Returns:
        The funnel: rows per (stage, reason).

    Raises:
        UserError: bad inputs or benchmarks, checked before any work.
    """
    config = config or CurationConfig()
    check_benchmarks(config.benchmarks)  # before any work, Hub inputs included
    specs = [str(p) for p in (inputs if isinstance(inputs, list) else [inputs])]
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="genteach-curate-") as work:
        resolved = resolve_inputs(specs, Path(work))
        curated, skipped, columns = _curated_inputs(resolved, config)
        decisions = analyse(curated, config, progress)
        removed = removed_table(decisions)  # both read the input: before it is replaced
        stats = curation_stats(decisions, config, columns)
        for c, source in enumerate(decisions.inputs):
            mine = (decisions.config_of_row == c) & (decisions.reason < 0)
            source.write_rows(decisions.local_row[mine], out)
        for source in skipped:  # configs without text (e.g. failures) travel unchanged
            target = out / DATA_DIR / source.config
            if not all(f.parent.resolve() == target.resolve() for f in source.files):
                target.mkdir(parents=True, exist_ok=True)
                for f in source.files:
                    shutil.copy(f, target / f.name)
        previous = read_previous_funnel(repo_folder_of(specs))
        funnel = funnel_table([s.config for s in decisions.inputs], decisions.config_of_row,
                              decisions.reason, decisions.reasons, previous)
        pq.write_table(funnel, out / FUNNEL_FILE)
        pq.write_table(removed, out / REMOVED_FILE)
        write_json(out / STATS_FILE, stats)
    return funnel
