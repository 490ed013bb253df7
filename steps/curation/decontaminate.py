"""Benchmark decontamination by word n-gram overlap (Tülu 3 rule by default, strict any-n-gram mode).

Tülu 3 rule: an eval item's token is matched by a training row if it lies inside an n-gram (n = 8)
that also occurs in that row; the row overlaps the item if more than half of the item's tokens are
matched by it. Strict mode (open-r1, s1): a row that shares any n-gram with any item is flagged.
Both compare the row's user turns with the items, after the same normalisation as dedup.

Speed: every item n-gram hash goes into a sorted array, a blocked bloom filter (16 bits per
n-gram, 3 bits in one 64-bit block) and a bucket index into the sorted array. A numba kernel
tests each row n-gram against the filter (one load, ~0.5% false hits) and looks only the hits up
in their bucket (~1 entry, no binary search): a lookup misses the cache, so the false-hit rate,
not the filter, sets the speed. The exact Tülu coverage is computed only for rows with a hit.
Items shorter than n words cannot be matched this way; they are counted as `items_too_short`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from steps.curation import kernels
from steps.curation.benchmark_sets import BenchmarkSet
from steps.curation.ngrams import Words, ngrams, words

Mode = Literal["tulu", "strict"]
TULU_ITEM_COVERAGE = 0.5  # an item overlaps a row above this matched-token fraction
TULU_DATASET_SHARE = 0.02  # a dataset is contaminated above this share of one eval's items
BLOOM_BITS_PER_GRAM = 16  # blocked bloom filter, 3 bits per n-gram: ~0.5% false hits


@dataclass
class BenchmarkIndex:
    """The n-grams of every item of every benchmark set, for membership tests."""

    names: list[str]
    n: int
    table: np.ndarray  # sorted uint64 n-gram hashes
    entry_item: np.ndarray  # per table entry: global item number
    entry_pos: np.ndarray  # per table entry: word position of the n-gram in its item
    item_set: np.ndarray  # per item: index into names
    item_words: np.ndarray  # per item: word count
    item_local: np.ndarray  # per item: its index within its own benchmark set
    bitmap: np.ndarray  # blocked bloom filter: block hash >> shift holds _bloom_mask(hash)
    shift: np.uint64
    bucket_starts: np.ndarray  # table[bucket_starts[b]:bucket_starts[b+1]] have hash >> bucket_shift == b
    bucket_shift: np.uint64

    @classmethod
    def build(cls, sets: list[BenchmarkSet], n: int = 8) -> BenchmarkIndex:
        texts = [text for s in sets for text in s.items]
        item_set = np.repeat(np.arange(len(sets)), [len(s.items) for s in sets])
        item_local = np.concatenate([np.arange(len(s.items)) for s in sets] or [np.zeros(0)])
        tokens = words(pa.array(texts, pa.large_string()))
        grams, offsets = ngrams(tokens, n, short_as_one=False)
        counts = np.diff(offsets)
        item = np.repeat(np.arange(len(texts)), counts)
        pos = np.arange(len(grams)) - np.repeat(offsets[:-1], counts)
        order = np.argsort(grams)
        bits = max(16, int(np.ceil(np.log2(max(len(grams), 1) * BLOOM_BITS_PER_GRAM))))
        shift = np.uint64(64 - (bits - 6))
        bitmap = kernels.bloom_filter(grams, 1 << (bits - 6), shift)
        table = grams[order]
        bucket_bits = max(bits - 4, 1)  # ~1 entry per bucket
        bucket_shift = np.uint64(64 - bucket_bits)
        sizes = np.bincount((table >> bucket_shift).astype(np.int64), minlength=1 << bucket_bits)
        bucket_starts = np.concatenate([[0], np.cumsum(sizes)])
        return cls([s.name for s in sets], n, table, item[order], pos[order], item_set,
                   tokens.counts, item_local.astype(np.int64), bitmap, shift, bucket_starts,
                   bucket_shift)

    def items_too_short(self) -> np.ndarray:
        """Per benchmark set, how many items have fewer than n words (they cannot be matched)."""
        short = self.item_words < self.n
        return np.bincount(self.item_set[short], minlength=len(self.names))


@dataclass
class Overlaps:
    """Row-item overlaps of one batch: parallel arrays, one entry per (row, item) pair."""

    row: np.ndarray
    item: np.ndarray
    coverage: np.ndarray  # fraction of the item's words matched by the row


def overlaps(index: BenchmarkIndex, tokens: Words, mode: Mode) -> Overlaps:
    """Every (row, item) pair of the batch (its user-text words) that the rule flags."""
    docs, firsts, lasts = kernels.scan(tokens.hashes, tokens.offsets, index.n, index.bitmap, index.shift,
                                index.table, index.bucket_starts, index.bucket_shift)
    spans = lasts - firsts
    entries = np.repeat(firsts - np.cumsum(spans) + spans, spans) + np.arange(spans.sum())
    doc = np.repeat(docs, spans)
    item = index.entry_item[entries]
    pos = index.entry_pos[entries]
    order = np.lexsort((pos, item, doc))
    doc, item, pos = doc[order], item[order], pos[order]
    keep = np.ones(len(doc), dtype=bool)
    keep[1:] = (doc[1:] != doc[:-1]) | (item[1:] != item[:-1]) | (pos[1:] != pos[:-1])
    doc, item, pos = doc[keep], item[keep], pos[keep]
    if len(doc) == 0:
        return Overlaps(doc, item, np.zeros(0))
    # Matched tokens of a (row, item) pair: the union of [pos, pos + n) over its matched n-grams.
    pair_start = np.ones(len(doc), dtype=bool)
    pair_start[1:] = (doc[1:] != doc[:-1]) | (item[1:] != item[:-1])
    gap = np.full(len(doc), index.n)
    same = ~pair_start[1:]
    gap[:-1][same] = np.minimum(index.n, pos[1:][same] - pos[:-1][same])
    pair = np.cumsum(pair_start) - 1
    covered = np.bincount(pair, weights=gap)
    heads = np.flatnonzero(pair_start)
    coverage = covered / index.item_words[item[heads]]
    flagged = coverage > TULU_ITEM_COVERAGE if mode == "tulu" else np.ones(len(heads), bool)
    return Overlaps(doc[heads][flagged], item[heads][flagged], coverage[flagged])


@dataclass
class ContaminationReport:
    """Per benchmark: rows flagged and distinct items hit, accumulated over batches."""

    index: BenchmarkIndex
    rows_flagged: np.ndarray = field(init=False)
    items_hit: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rows_flagged = np.zeros(len(self.index.names), dtype=np.int64)

    def add(self, found: Overlaps, row_set: np.ndarray) -> None:
        """`row_set`: the benchmark each flagged row is attributed to (one per row)."""
        self.rows_flagged += np.bincount(row_set, minlength=len(self.index.names))
        self.items_hit.update(found.item.tolist())

    def as_dict(self, training_rows: int) -> dict[str, dict[str, object]]:
        hit = np.zeros(len(self.index.names), dtype=np.int64)
        if self.items_hit:
            hit = np.bincount(self.index.item_set[list(self.items_hit)], minlength=len(hit))
        total = np.bincount(self.index.item_set, minlength=len(hit))
        short = self.index.items_too_short()
        report = {}
        for b, name in enumerate(self.index.names):
            share = hit[b] / total[b] if total[b] else 0.0
            report[name] = {
                "items": int(total[b]), "items_too_short": int(short[b]),
                "items_hit": int(hit[b]), "items_hit_share": round(float(share), 6),
                "rows_flagged": int(self.rows_flagged[b]), "training_rows": training_rows,
                "dataset_contaminated": bool(share > TULU_DATASET_SHARE),
            }
        return report


def first_set_per_row(index: BenchmarkIndex, found: Overlaps) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """For each flagged row: (row, benchmark set, item) of its first overlap by set then item."""
    sets = index.item_set[found.item]
    order = np.lexsort((found.item, sets, found.row))
    row, sets, item = found.row[order], sets[order], found.item[order]
    first = np.ones(len(row), dtype=bool)
    first[1:] = row[1:] != row[:-1]
    return row[first], sets[first], item[first]
