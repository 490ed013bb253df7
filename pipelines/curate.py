"""Curate any chat or text dataset: filters, benchmark decontamination, exact and near-dup removal.

    python pipelines/curate.py outputs/run1 --out outputs/run1-curated --benchmarks gsm8k=gsm8k.jsonl
    python pipelines/curate.py 'data/*.parquet' --text-column text --out curated/
    python pipelines/curate.py org/dataset --out curated/          # Hub id (needs the network)

Writes a dataset folder: data/<config>/train-00000-of-00001.parquet, funnel.parquet (rows in,
removed per stage/reason, rows out), removed.parquet (each removed row, why, and the row it
duplicates or the benchmark item it leaks) and stats.json. The logic lives in steps/curation/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from steps.curation import CurationConfig, FilterConfig, curate
from steps.curation.config import load_skill_filters
from steps.errors import UserError, cli_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="Parquet files/globs, a dataset folder or a Hub id")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder (may be the input)")
    p.add_argument("--text-column", help="curate this plain-text column instead of `messages`")
    p.add_argument("--dedup-on", choices=["conversation", "user"], default="conversation",
                   help="text compared by exact and near-dup (default: user+assistant turns)")
    p.add_argument("--no-exact-dedup", action="store_true")
    p.add_argument("--no-near-dup", action="store_true")
    p.add_argument("--shingle-words", type=int, default=5, help="word n-gram size of shingles")
    p.add_argument("--bands", type=int, default=32)
    p.add_argument("--rows-per-band", type=int, default=8)
    p.add_argument("--jaccard", type=float, default=0.8, help="near-dup threshold, verified exactly")
    p.add_argument("--embedding-dedup", action="store_true", help="Magpie's embedding rule too")
    p.add_argument("--benchmarks", nargs="*", default=[], metavar="[NAME=]SOURCE",
                   help="benchmark sets: .jsonl/.json/.parquet files, folders or Hub ids")
    p.add_argument("--benchmark-field", help="item text column (default: guessed, see docs)")
    p.add_argument("--benchmark-split", default="test")
    p.add_argument("--decontamination", choices=["tulu", "strict"], default="tulu")
    p.add_argument("--decontamination-ngram", type=int, default=8)
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-words", type=int)
    p.add_argument("--languages", help="comma-separated ISO codes to keep (needs py3langid)")
    p.add_argument("--no-refusal-filter", action="store_true")
    p.add_argument("--skill-filters", type=Path, help="YAML: skill -> filter settings")
    p.add_argument("--batch-rows", type=int, default=4096)
    p.add_argument("--token-sample", type=int, default=1000, help="rows per config for token stats")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> CurationConfig:
    try:
        return CurationConfig(
            text_column=args.text_column, dedup_on=args.dedup_on,
            exact_dedup=not args.no_exact_dedup, near_dup=not args.no_near_dup,
            shingle_words=args.shingle_words, bands=args.bands, rows_per_band=args.rows_per_band,
            jaccard=args.jaccard, embedding_dedup=args.embedding_dedup, benchmarks=args.benchmarks,
            benchmark_field=args.benchmark_field, benchmark_split=args.benchmark_split,
            decontamination=args.decontamination,
            decontamination_ngram=args.decontamination_ngram,
            filters=FilterConfig(
                min_words=args.min_words, max_words=args.max_words,
                languages=args.languages.split(",") if args.languages else None,
                refusal=not args.no_refusal_filter),
            skill_filters=load_skill_filters(args.skill_filters) if args.skill_filters else {},
            batch_rows=args.batch_rows, token_sample=args.token_sample)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise UserError(f"options: {str(error).splitlines()[-2].strip()}") from None


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    funnel = curate(args.inputs, args.out, config_from_args(args))
    with pl.Config(tbl_rows=-1):
        print(pl.from_arrow(funnel))
    print(f"curated dataset: {args.out}")


if __name__ == "__main__":
    main()
