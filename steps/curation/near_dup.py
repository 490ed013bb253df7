"""MinHash LSH near-duplicates: signatures, band keys, candidate pairs, exact verification.

Signatures use one-permutation hashing (OPH) with optimal densification (Shrivastava 2017): each
shingle hash is computed once and lands in one of K = bands × rows bins, keeping the bin minimum;
an empty bin copies the bin its own fixed probe sequence hits first. Two documents agree on a bin
with probability equal to their Jaccard similarity, as with K independent permutations, but the
cost is one hash per shingle instead of K (the reason this beats per-permutation MinHash by far).

Band keys collide for pairs above roughly (1/bands)^(1/rows); every colliding pair is then
verified with the exact Jaccard of the two shingle sets, so the LSH setting only trades recall
for verification work, never precision. A run of more rows with one band key than
MAX_PAIRS_PER_RUN allows is paired within a window (counted as `oversized_bucket_rows`).

A pair at or above the Jaccard threshold is a duplicate only if both rows hold the same numbers,
symbols and negations (as multisets: moved, not changed) and neither row holds content the
other lacks (`differs`): the text both share (every token inside a shingle of the other row: a
shared passage, template or boilerplate) is set aside, and what remains must not contain a
number, symbol or negation, nor be more than SEGMENT_SHARE of a sentence or line (nor any token
of a line holding symbols: code and formulas). A common prefix or suffix of the two texts counts
as shared (edge shingles are padded). So the same passage with another question, a template
with another code body (`a + b` vs `a - b`), a negated statement or another number keeps both
rows, while typos, a changed word in a long sentence, inserted filler words and moved sentences
still merge. The rule and its thresholds are measured by benchmarks/curation.py (accuracy part).

Rows are then kept greedily in rank order (`kernels.keep_greedy`): a row is removed only as a
duplicate of a kept row it forms a verified pair with, never through a chain of pairs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps.curation import kernels
from steps.curation.ngrams import Words

MAX_PAIRS_PER_RUN = 1 << 21  # all pairs of a run of up to 2,048 rows sharing a band key
SEGMENT_SHARE = 0.25  # unshared tokens above this share of a prose sentence make it another task
SUBSTANCE = kernels.NUMBER | kernels.SYMBOL_TOKEN | kernels.NEGATION


def band_keys(grams: np.ndarray, gram_offsets: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys (docs × bands, uint64) from shingle hashes in CSR form; 0 = no shingles."""
    return kernels.band_keys(grams, gram_offsets, bands, rows)


class BandStore:
    """Band keys spilled to one file per band, so that memory holds one band at a time.

    Rows are numbered globally in the order `append` sees them; only rows marked eligible (alive
    after the earlier stages, with at least one shingle) can pair up.
    """

    def __init__(self, bands: int) -> None:
        """One temporary file of uint64 keys per band."""
        self._dir = tempfile.TemporaryDirectory(prefix="genteach-bands-")
        self._files = [Path(self._dir.name) / f"band{b}.u64" for b in range(bands)]
        self.rows = 0

    def append(self, keys: np.ndarray) -> None:
        """Append the band keys of the next rows, shape (rows, bands)."""
        for band, path in enumerate(self._files):
            with open(path, "ab") as handle:
                np.ascontiguousarray(keys[:, band]).tofile(handle)
        self.rows += keys.shape[0]

    def candidate_pairs(self, eligible: np.ndarray, max_pairs: int = MAX_PAIRS_PER_RUN
                        ) -> tuple[np.ndarray, int]:
        """Unique (a, b) row pairs, a < b, that share at least one band key, and the rest.

        The second value counts (row, band) entries in runs too big to pair completely.
        """
        rows = np.flatnonzero(eligible)
        # Sort keys with the row number packed into their low bits: a plain sort of uint64 is
        # faster than an argsort, and the few key bits lost only add pairs that verification drops.
        low = np.uint64((1 << max(1, (len(rows) - 1).bit_length())) - 1)
        codes = np.zeros(0, dtype=np.int64)
        oversized = 0
        for path in self._files:
            keys = np.fromfile(path, dtype=np.uint64)[rows]
            packed = np.sort((keys & ~low) | np.arange(len(rows), dtype=np.uint64))
            pairs, big = kernels.run_pairs(packed & ~low, rows[(packed & low).astype(np.int64)],
                                           max_pairs)
            oversized += big
            codes = np.union1d(codes, pairs[:, 0] * self.rows + pairs[:, 1])
        pairs = np.stack([codes // max(self.rows, 1), codes % max(self.rows, 1)], axis=1)
        return pairs, oversized

    def close(self) -> None:
        """Delete the band files."""
        self._dir.cleanup()


@dataclass
class ShingleSets:
    """Exact shingle sets of the candidate rows (only these are kept for verification).

    Also each row's shingles in text order and its token flags, for `differs`.
    """

    rows: np.ndarray  # sorted global row numbers
    values: np.ndarray  # uint32 sorted unique shingles per row (CSR by offsets)
    offsets: np.ndarray
    grams: np.ndarray  # uint32 shingles in text order (CSR by gram_offsets)
    gram_offsets: np.ndarray
    tokens: np.ndarray  # uint32 token hashes (high 32 bits), CSR by token_offsets
    flags: np.ndarray  # uint8 token flags, CSR by token_offsets
    token_offsets: np.ndarray
    substance_keys: np.ndarray  # uint64 per row: its numbers, symbols and negations as a multiset

    @classmethod
    def build(cls, rows: np.ndarray, parts: list[tuple[np.ndarray, ...]]) -> ShingleSets:
        """`parts`: `shingle_parts` chunks of `rows` in order."""
        def csr(values: int, offsets: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
            if not parts:
                return np.zeros(0, dtype), np.zeros(1, np.int64)
            sizes = np.concatenate([np.diff(p[offsets]) for p in parts])
            return (np.concatenate([p[values] for p in parts]),
                    np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

        tokens, token_offsets = csr(4, 6, np.uint32)
        flags = csr(5, 6, np.uint8)[0]
        keys = np.concatenate([p[7] for p in parts]) if parts else np.zeros(0, np.uint64)
        return cls(rows, *csr(0, 1, np.uint32), *csr(2, 3, np.uint32), tokens, flags, token_offsets,
                   keys)

    def _index(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.searchsorted(self.rows, pairs[:, 0]), np.searchsorted(self.rows, pairs[:, 1])

    def jaccard(self, pairs: np.ndarray) -> np.ndarray:
        """Per pair (rows of shape (n, 2)), the exact Jaccard similarity of their shingle sets."""
        return kernels.jaccard(self.values, self.offsets, *self._index(pairs))

    def differs(self, pairs: np.ndarray, shingle_words: int) -> np.ndarray:
        """Per pair, whether either row holds content the other lacks (module docstring)."""
        return kernels.differs(self.values, self.offsets, self.grams, self.gram_offsets,
                               self.tokens, self.flags, self.token_offsets, self.substance_keys,
                               *self._index(pairs), shingle_words, SEGMENT_SHARE, SUBSTANCE)


def shingle_parts(tokens: Words, grams: np.ndarray, gram_offsets: np.ndarray
                  ) -> tuple[np.ndarray, ...]:
    """What ShingleSets keeps of a batch of candidate rows.

    Sorted unique shingles, shingles in order, tokens (each the high 32 bits of its hash) and token flags,
    CSR (values, offsets), and each row's multiset key of its numbers, symbols and negations.
    """
    values, offsets = kernels.shingle_sets(grams, gram_offsets)
    return (values, offsets, (grams >> np.uint64(32)).astype(np.uint32), gram_offsets,
            (tokens.hashes >> np.uint64(32)).astype(np.uint32), tokens.flags,
            tokens.offsets - tokens.offsets[0],
            kernels.multiset_keys(tokens.hashes, tokens.offsets, tokens.flags, SUBSTANCE))


def keep_greedy(n_rows: int, pairs: np.ndarray, similarity: np.ndarray, rank: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """duplicate_of (-1 = kept) and the similarity to that row (see `kernels.keep_greedy`)."""
    return kernels.keep_greedy(pairs, similarity, rank, n_rows)
