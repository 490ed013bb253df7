"""Curation as a distilabel step, for pipelines that curate before they write.

`CurateRows` is a GlobalStep (dedup needs every row at once): it runs `curate()` over all upstream
rows and yields the kept ones in their original order. Nothing is dropped silently: the funnel,
the removed rows and the stats go to `report_dir` when given, and the funnel is logged.
"""

import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from distilabel.mixins.runtime_parameters import RuntimeParameter
from distilabel.steps import GlobalStep, StepInput
from distilabel.typing import StepOutput
from pydantic import Field
from typing_extensions import override

from steps.curation.config import CurationConfig
from steps.curation.run import FUNNEL_FILE, REMOVED_FILE, STATS_FILE, curate
from steps.repo_folder import config_file


class CurateRows(GlobalStep):
    """Filters, decontaminates and deduplicates all rows; `curation` holds CurationConfig fields."""

    curation: dict[str, Any] = Field(default_factory=dict)
    report_dir: RuntimeParameter[str] | None = Field(
        default=None, description="Folder for funnel.parquet, removed.parquet and stats.json.")

    @property
    @override
    def inputs(self) -> list[str]:
        return [CurationConfig(**self.curation).text_column or "messages"]

    @property
    @override
    def outputs(self) -> list[str]:
        return []

    @override
    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        config = CurationConfig(**{"token_sample": 0, **self.curation})
        with tempfile.TemporaryDirectory(prefix="genteach-curate-step-") as work:
            source, target = Path(work) / "in.parquet", Path(work) / "out"
            pq.write_table(pa.Table.from_pylist(list(inputs)), source)
            funnel = curate(str(source), target, config, progress=False)
            self._logger.info(f"curation funnel:\n{pl.from_arrow(funnel)}")
            if self.report_dir:
                report = Path(self.report_dir)
                report.mkdir(parents=True, exist_ok=True)
                for name in (FUNNEL_FILE, REMOVED_FILE, STATS_FILE):
                    shutil.copy(target / name, report / name)
            kept = pq.read_table(config_file(target, "default")).to_pylist()
        yield kept
