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

import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from steps.curation.ngrams import fmix64

_PROBE = np.uint64(0x9E3779B97F4A7C15)
_BAND_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True)
def _band_keys(grams, gram_offsets, bands, rows):
    """Band keys (docs × bands, uint64) of OPH signatures; docs without shingles get key 0."""
    n_docs = gram_offsets.shape[0] - 1
    k_bins = bands * rows
    keys = np.zeros((n_docs, bands), dtype=np.uint64)
    signature = np.empty(k_bins, dtype=np.uint32)
    filled = np.empty(k_bins, dtype=np.bool_)
    for d in range(n_docs):
        start = gram_offsets[d]
        end = gram_offsets[d + 1]
        if start == end:
            continue
        signature[:] = np.uint32(0xFFFFFFFF)
        filled[:] = False
        for i in range(start, end):
            h = grams[i]
            b = ((h >> np.uint64(32)) * np.uint64(k_bins)) >> np.uint64(32)
            value = np.uint32(h & np.uint64(0xFFFFFFFF))
            filled[b] = True
            if value < signature[b]:
                signature[b] = value
        for j in range(k_bins):  # optimal densification: probe (j, 1), (j, 2), ... until filled
            attempt = np.uint64(1)
            source = j
            while not filled[source]:
                probe = fmix64(np.uint64(j) * _PROBE + attempt)
                source = np.int64((probe >> np.uint64(32)) * np.uint64(k_bins) >> np.uint64(32))
                attempt += np.uint64(1)
            if source != j:
                signature[j] = signature[source]
        for band in range(bands):
            key = np.uint64(band + 1)
            for r in range(rows):
                key = (key ^ np.uint64(signature[band * rows + r])) * _BAND_PRIME
            keys[d, band] = fmix64(key) | np.uint64(1)  # never 0, the "no shingles" key
    return keys


@numba.njit(cache=True)
def _run_pairs(sorted_keys, order, max_run):
    """Pairs (a, b), a < b, of rows whose keys are equal: all pairs in runs up to `max_run`
    rows, a star on the run's first row beyond that (a degenerate key must not go quadratic)."""
    n = sorted_keys.shape[0]
    count = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        size = j - i
        count += size * (size - 1) // 2 if size <= max_run else size - 1
        i = j
    pairs = np.empty((count, 2), dtype=np.int64)
    p = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        size = j - i
        for x in range(i, j if size <= max_run else i + 1):
            for y in range(x + 1, j):
                a = order[x]
                b = order[y]
                pairs[p, 0] = min(a, b)
                pairs[p, 1] = max(a, b)
                p += 1
        i = j
    return pairs


@numba.njit(cache=True)
def _shingle_sets(grams, gram_offsets):
    """Per document, its sorted unique shingles as the high 32 bits of the gram hashes (CSR)."""
    n_docs = gram_offsets.shape[0] - 1
    values = np.empty(gram_offsets[n_docs], dtype=np.uint32)
    offsets = np.empty(n_docs + 1, dtype=np.int64)
    n = 0
    for d in range(n_docs):
        offsets[d] = n
        doc = np.sort((grams[gram_offsets[d]:gram_offsets[d + 1]] >> np.uint64(32)).astype(np.uint32))
        for i in range(doc.shape[0]):
            if i == 0 or doc[i] != doc[i - 1]:
                values[n] = doc[i]
                n += 1
    offsets[n_docs] = n
    return values[:n].copy(), offsets


@numba.njit(cache=True)
def _jaccard(values, offsets, left, right):
    """Exact Jaccard of the shingle sets of documents left[i] and right[i] (merge of sorted sets)."""
    out = np.empty(left.shape[0], dtype=np.float64)
    for p in range(left.shape[0]):
        a, a_end = offsets[left[p]], offsets[left[p] + 1]
        b, b_end = offsets[right[p]], offsets[right[p] + 1]
        size = (a_end - a) + (b_end - b)
        common = 0
        while a < a_end and b < b_end:
            if values[a] == values[b]:
                common += 1
                a += 1
                b += 1
            elif values[a] < values[b]:
                a += 1
            else:
                b += 1
        union = size - common
        out[p] = common / union if union else 1.0
    return out


def band_keys(grams: np.ndarray, gram_offsets: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys (docs × bands, uint64) from shingle hashes in CSR form; 0 = no shingles."""
    return _band_keys(grams, gram_offsets, bands, rows)


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
            pairs = _run_pairs(packed & ~low, rows[(packed & low).astype(np.int64)], max_run)
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
        return _jaccard(self.values, self.offsets, left, right)


def shingle_sets(grams: np.ndarray, gram_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _shingle_sets(grams, gram_offsets)


def cluster_labels(n_rows: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per row (rows in no pair are their own component)."""
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(n_rows, n_rows))
    return connected_components(graph, directed=False)[1]
