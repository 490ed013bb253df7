"""Curation: what is removed from synthetic data, and a funnel that says how much and why.

One module per role: `normalise` (which text each stage reads), `ngrams` (word and n-gram hashes,
the compiled hot path), `filters`, `decontaminate` (+ `benchmark_sets`), exact dedup and its keep
rule (`clusters`), `near_dup` (MinHash LSH), `embedding_dedup` (optional), `decisions` (what
was decided per row, removed.parquet), `funnel` (funnel table and stats.json), `sources` (Parquet /
dataset folder / Hub in, dataset folder out), `run` (the streaming run), `distilabel_steps` (the
same as a distilabel step).

Entry point for code: `curate(inputs, out_dir, CurationConfig(...)) -> funnel table`.
`check_benchmarks(specs)` checks `--benchmarks` values at once (before generation starts).
"""

from steps.curation.benchmark_sets import check_benchmarks
from steps.curation.config import CurationConfig, FilterConfig
from steps.curation.run import curate

__all__ = ["CurationConfig", "FilterConfig", "check_benchmarks", "curate"]
