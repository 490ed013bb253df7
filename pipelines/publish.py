"""Render the dataset card of an existing repository folder, and optionally push the folder.

    python pipelines/publish.py --repo-dir outputs/orca3_mix
    python pipelines/publish.py --repo-dir outputs/orca3_mix --push-to-hub org/name [--private]

The card (README.md + plots/) is always written locally first, so the folder is a Hub-ready
dataset repository even without a token; `--push-to-hub` then uploads it as one commit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steps.errors import cli_main
from steps.publish import check_repo_id, push_folder, write_card


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-dir", type=Path, required=True,
                        help="the run's repository folder (data/<config>/…, run.json)")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="NAMESPACE/NAME of the Hub dataset repo (created if needed)")
    parser.add_argument("--private", action="store_true",
                        help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--license", help="license id for the card (default: run config, else other)")
    args = parser.parse_args(argv)
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)  # before the card is rendered with it

    readme = write_card(args.repo_dir, repo_id=args.push_to_hub, license=args.license)
    print(f"card written: {readme}")
    if args.push_to_hub:
        print(f"pushed: {push_folder(args.repo_dir, args.push_to_hub, private=args.private)}")


if __name__ == "__main__":
    main()
