"""The keep rule shared by exact and near-duplicate removal: one row per cluster, chosen by rank.

A row's rank orders rows by content, not by position: the `id` column when the data has one
(stable hashes of provenance), else the hash of the normalised text. The kept row of a cluster is
the one of smallest rank, so it is the same across runs and whatever the input order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def ranks(ids: pa.ChunkedArray | None, text_keys: np.ndarray) -> np.ndarray:
    """Rank per row (0 = kept first): by id when given (nulls last), else by text hash.

    Ties (equal ids or equal normalised texts) fall back to row order; such rows are identical in
    what decides, so which of them survives does not change the data.
    """
    if ids is not None:
        order = pc.array_sort_indices(ids, null_placement="at_end").to_numpy()
    else:
        order = np.argsort(text_keys, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def representatives(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For every row, the index of its cluster's kept row (itself when it is kept)."""
    order = np.lexsort((rank, labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    heads = order[first]
    kept = np.empty(len(order), dtype=np.int64)
    kept[order] = heads[np.cumsum(first) - 1]
    return kept
