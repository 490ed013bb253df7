"""review: send a dataset made here to Argilla for human review, and bring the answers back.

    push    one review queue (Argilla dataset) per row config, named NAME-CONFIG; sends only the
            rows not there yet, so it can be rerun after new rows or an interruption
    pull    reads the final answers; writes the `reviewed` config (kept rows, corrections
            applied), review.parquet (one line per row) and review.json (the card's counts)
    status  prints the counts pull would write, and writes nothing

SOURCE is a repository folder a pipeline wrote (e.g. outputs/orca3_mix) or a Hub dataset repo id,
downloaded into --download-dir. Server and key: --api-url/--api-key or ARGILLA_API_URL and
ARGILLA_API_KEY (an owner's or admin's key; prefer the variable: flags show in `ps`). The key is
never printed or written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from steps import REPO_ROOT
from steps.errors import UserError, cli_main
from steps.review import server
from steps.review.connection import argilla_errors, connect
from steps.review.pull import collect, write
from steps.review.push import push_config, review_configs
from steps.review.source import local_folder, queue_prefix
from steps.taxonomy import Taxonomy, load_taxonomy

console = Console(soft_wrap=True)  # one line per queue, whatever the terminal width


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["push", "pull", "status"])
    p.add_argument("source", help="repository folder, or Hub dataset repo id NAMESPACE/NAME")
    p.add_argument("--api-url", help="Argilla server URL (default: $ARGILLA_API_URL)")
    p.add_argument("--api-key", help="Argilla API key (default: $ARGILLA_API_KEY)")
    p.add_argument("--workspace", help="Argilla workspace (default: the key user's first)")
    p.add_argument("--name", help="prefix of the Argilla dataset names (default: folder name)")
    p.add_argument("--configs", type=lambda s: [c for c in s.split(",") if c],
                   help="comma-separated configs (default: every row config but `reviewed`)")
    p.add_argument("--min-submitted", type=int, default=1,
                   help="push: reviews that complete a record in a new queue (default 1)")
    p.add_argument("--download-dir", type=Path, default=REPO_ROOT / "outputs" / "review",
                   help="where a Hub dataset repo is downloaded")
    args = p.parse_args(argv)
    if args.min_submitted < 1:
        p.error("--min-submitted must be at least 1")
    return args


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = local_folder(args.source, args.download_dir)
    prefix = args.name or queue_prefix(folder)
    config_names = review_configs(folder, args.configs)
    client = connect(args.api_url, args.api_key)
    with argilla_errors(client.api_url):
        ws = server.workspace(client, args.workspace)
        if args.command == "push":
            taxonomy = _taxonomy()
            for config in config_names:
                result = push_config(client, ws, folder, config, prefix, taxonomy,
                                     args.min_submitted)
                refused = ", ".join(f"{n} {why}" for why, n in result.refused.items()) or "none"
                console.print(f"{config} → {ws.name}/{result.dataset}: {result.rows} rows, "
                              f"{result.already_there} already there, {result.sent} sent, "
                              f"{result.duplicates} duplicates, refused: {refused}")
            return
        review = collect(client, ws, folder, config_names, prefix)
        if args.command == "pull":
            write(folder, review, ws.name)
        for config, counts in [*review.counts.items(), ("total", review.totals())]:
            console.print(_summary(config, counts))
        if args.command == "pull":
            console.print(f"wrote {folder}/data/reviewed ({len(review.kept_rows)} rows), "
                          "review.parquet, review.json")


def _taxonomy() -> Taxonomy | None:
    """The taxonomy for the guidelines; without one, queues get the general criteria only."""
    try:
        return load_taxonomy()
    except UserError as error:
        console.print(f"note: taxonomy not loaded ({error}); guidelines use general criteria")
        return None


def _summary(config: str, counts: dict) -> str:
    agreement = "—" if counts["agreement"] is None else f"{counts['agreement']:.2f}"
    return (f"{config}: {counts['rows']} rows · {counts['reviewed']} reviewed ({counts['kept']} kept,"
            f" {counts['discarded']} discarded, {counts['corrected']} corrected) · "
            f"{counts['pending']} pending ({counts['not_in_argilla']} not in Argilla) · agreement "
            f"{agreement} over {counts['multi_reviewed']} rows with 2+ reviewers · "
            f"{counts['orphaned_records']} records without a current row")


if __name__ == "__main__":
    main()
