"""MinHash LSH near-duplicates: signatures, band keys, candidate pairs, exact verification.

Signatures use one-permutation hashing (OPH) with optimal densification (Shrivastava 2017): each
shingle hash is computed once and lands in one of K = bands × rows bins, keeping the bin minimum;
an empty bin copies the bin its own fixed probe sequence hits first. Two documents agree on a bin
with probability equal to their Jaccard similarity, as with K independent permutations, but the
cost is one hash per shingle instead of K (the reason this beats per-permutation MinHash by far).

Band keys collide for pairs above roughly (1/bands)^(1/rows); every colliding pair is then
verified with the exact Jaccard of the two shingle sets, so the LSH setting only trades recall
for verification work, never precision. Verified pairs are clustered by connected components.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from steps.curation import kernels


def band_keys(grams: np.ndarray, gram_offsets: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys (docs × bands, uint64) from shingle hashes in CSR form; 0 = no shingles."""
    return kernels.band_keys(grams, gram_offsets, bands, rows)


class BandStore:
    """Band keys spilled to one file per band, so that memory holds one band at a time.

    Rows are numbered globally in the order `append` sees them; only rows marked eligible (alive
    after the earlier stages, with at least one shingle) can pair up.
    """

    def __init__(self, bands: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="genteach-bands-")
        self._files = [Path(self._dir.name) / f"band{b}.u64" for b in range(bands)]
        self.rows = 0

    def append(self, keys: np.ndarray) -> None:
        for band, path in enumerate(self._files):
            with open(path, "ab") as handle:
                np.ascontiguousarray(keys[:, band]).tofile(handle)
        self.rows += keys.shape[0]

    def candidate_pairs(self, eligible: np.ndarray, max_run: int = 64) -> np.ndarray:
        """Unique (a, b) row pairs, a < b, that share at least one band key."""
        rows = np.flatnonzero(eligible)
        # Sort keys with the row number packed into their low bits: a plain sort of uint64 is
        # faster than an argsort, and the few key bits lost only add pairs that verification drops.
        low = np.uint64((1 << max(1, (len(rows) - 1).bit_length())) - 1)
        found = []
        for path in self._files:
            keys = np.fromfile(path, dtype=np.uint64)[rows]
            packed = np.sort((keys & ~low) | np.arange(len(rows), dtype=np.uint64))
            pairs = kernels.run_pairs(packed & ~low, rows[(packed & low).astype(np.int64)], max_run)
            found.append(pairs[:, 0] * self.rows + pairs[:, 1])
        codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        return np.stack([codes // max(self.rows, 1), codes % max(self.rows, 1)], axis=1)

    def close(self) -> None:
        self._dir.cleanup()


@dataclass
class ShingleSets:
    """Exact shingle sets of the candidate rows (only these are kept for verification)."""

    rows: np.ndarray  # sorted global row numbers
    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, rows: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> ShingleSets:
        """`parts`: (values, offsets) CSR chunks of `rows` in order."""
        values = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.uint32)
        sizes = np.concatenate([np.diff(p[1]) for p in parts]) if parts else np.zeros(0, np.int64)
        return cls(rows, values, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

    def jaccard(self, pairs: np.ndarray) -> np.ndarray:
        left = np.searchsorted(self.rows, pairs[:, 0])
        right = np.searchsorted(self.rows, pairs[:, 1])
        return kernels.jaccard(self.values, self.offsets, left, right)


def shingle_sets(grams: np.ndarray, gram_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return kernels.shingle_sets(grams, gram_offsets)


def cluster_labels(n_rows: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per row (rows in no pair are their own component)."""
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(n_rows, n_rows))
    return connected_components(graph, directed=False)[1]
