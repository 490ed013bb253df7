"""Curate any chat or text dataset: filters, benchmark decontamination, exact and near-dup removal.

    python pipelines/curate.py outputs/run1 --out outputs/run1-curated --benchmarks gsm8k=gsm8k.jsonl
    python pipelines/curate.py 'data/*.parquet' --text-column text --out curated/
    python pipelines/curate.py org/dataset --out curated/          # Hub id (needs the network)
    python pipelines/curate.py --config recipes/curate/run_folder.yaml

Writes a dataset folder: data/<config>/train-00000-of-00001.parquet, funnel.parquet (rows in,
removed per stage/reason, rows out), removed.parquet (each removed row, why, and the row it
duplicates or the benchmark item it leaks), stats.json, run.json and the card, and pushes it with
--push-to-hub. When the input is a folder a genteach run wrote, its run.json is kept in the new
one (`source_run`) and the card still names its models and seeds. The logic lives in
steps/curation/.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from steps.curation import curate
from steps.curation.recipe_config import CurateConfig
from steps.curation.sources import repo_folder_of
from steps.errors import cli_main
from steps.finish_run import begin_run, check_run, finish_run
from steps.recipe_config import parse_config
from steps.repo_folder import RUN_FILE
from steps.run_record import RunRecord

FLOW = "curate"


def source_record(inputs: list[str]) -> RunRecord | None:
    """The run.json of the input folder, when the input is one folder a genteach run wrote."""
    folder = repo_folder_of(inputs)
    path = folder / RUN_FILE if folder else None
    if path is None or not path.is_file():
        return None
    return RunRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))


@cli_main
def main(argv: list[str] | None = None) -> Path:
    config = parse_config(CurateConfig, argv, __doc__)
    check_run(config, benchmarks=config.benchmarks)
    source = source_record(config.inputs)  # read before an in-place run removes it
    started = time.time()
    out = config.repo_dir
    begin_run(out)
    funnel = curate(config.inputs, out, config.curation())
    with pl.Config(tbl_rows=-1):
        print(pl.from_arrow(funnel))
    inherited = source.model_dump(include={"flows", "engines", "seed", "seeds",
                                           "taxonomy_version"}) if source else {}
    finish_run(config, RunRecord(
        **{"flows": [], **inherited}, run_id=config.run_id(), config=config.model_dump(mode="json"),
        wall_time_s=time.time() - started, started_at=datetime.fromtimestamp(started, UTC).isoformat(),
        source_run=source.model_dump(mode="json") if source else None))
    return out


if __name__ == "__main__":
    main()
