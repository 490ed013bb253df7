"""The card's charts as small PNG files in `plots/`, embedded in README.md by relative path.

Agg backend (no display); output depends only on the data, so re-rendering an unchanged folder
rewrites byte-identical files and a re-push commits nothing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import polars as pl  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from steps.repo_folder import FAILURES  # noqa: E402

PLOTS_DIR = "plots"
ROWS_PLOT = f"{PLOTS_DIR}/rows_per_config.png"
LENGTHS_PLOT = f"{PLOTS_DIR}/token_lengths.png"
_PNG_METADATA = {"Software": None}  # no version string: the bytes depend on the data only


def rows_per_config(rows: dict[str, int], path: Path) -> None:
    """Horizontal bars, one per config, labelled with its row count."""
    names = sorted(rows, key=lambda name: (-rows[name], name))[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(names) + 1.0), dpi=100)
    colours = ["#999999" if n == FAILURES else "#4C72B0" for n in names]
    bars = ax.barh(names, [rows[n] for n in names], color=colours)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title("Rows per config (grey: failed items)", fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.15)
    ax.tick_params(labelsize=8)
    _save(fig, path)


def token_lengths(lengths: pl.DataFrame, unit: str, path: Path) -> None:
    """Histograms of prompt and response lengths per row, one colour per flow."""
    flows = sorted(lengths["flow"].fill_null("unknown").unique().to_list())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    for ax, column, title in zip(axes, ("prompt_tokens", "response_tokens"),
                                 ("Prompt (system + user turns)", "Response (assistant turns)"),
                                 strict=True):
        values = [lengths.filter(pl.col("flow").fill_null("unknown") == f)[column].to_list()
                  for f in flows]
        ax.hist(values, bins=30, stacked=True, label=flows)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("rows", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if flows:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_PNG_METADATA, bbox_inches="tight")
    plt.close(fig)
