"""Benchmark decontamination by word n-gram overlap (Tülu 3 rule by default, strict any-n-gram mode).

Tülu 3 rule: an eval item's token is matched by a training row if it lies inside an n-gram (n = 8)
that also occurs in that row; the row overlaps the item if more than half of the item's tokens are
matched by it. Strict mode (open-r1, s1): a row that shares any n-gram with any item is flagged.
Both scan every user and assistant turn of a row (a benchmark item recited in an answer leaks as
well), after the same normalisation as dedup (so hyphenated line wraps, Unicode and width
variants match).

What counts when numbers differ: a benchmark item with only its numbers changed is still a leak
(the problem's wording is what a model memorises; GSM-style re-numbered items are the known case).
Every number token is therefore hashed alike in decontamination n-grams, so an item's coverage
does not depend on where its numbers sit. A row is attributed to ONE item: the one of highest
coverage, ties going to an item whose numbers all occur in the row (the exact item over its
re-numbered siblings), then to the first set and item; `similarity` is that item's coverage.
`items_hit` counts the distinct items that rows were attributed to.

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

NUMBER_TOKEN = 0x4E554D424552  # the hash every number token gets in decontamination n-grams

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
    number_values: np.ndarray  # sorted unique hashes of each item's number tokens (CSR)
    number_offsets: np.ndarray
    bitmap: np.ndarray  # blocked bloom filter: block hash >> shift holds _bloom_mask(hash)
    shift: np.uint64
    bucket_starts: np.ndarray  # table[bucket_starts[b]:bucket_starts[b+1]] have hash >> bucket_shift == b
    bucket_shift: np.uint64

    @classmethod
    def build(cls, sets: list[BenchmarkSet], n: int = 8) -> BenchmarkIndex:
        """Index the n-grams (n words, numbers masked) of every item of `sets`."""
        texts = [text for s in sets for text in s.items]
        item_set = np.repeat(np.arange(len(sets)), [len(s.items) for s in sets])
        item_local = np.concatenate([np.arange(len(s.items)) for s in sets] or [np.zeros(0)])
        exact = words(pa.array(texts, pa.large_string()))
        tokens = exact.masked(kernels.NUMBER, NUMBER_TOKEN)
        number_values, number_offsets = _number_sets(exact)
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
                   tokens.counts, item_local.astype(np.int64), number_values, number_offsets,
                   bitmap, shift, bucket_starts, bucket_shift)

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


def _number_sets(tokens: Words) -> tuple[np.ndarray, np.ndarray]:
    """Per document, the sorted unique hashes of its number tokens (CSR)."""
    is_number = (tokens.flags & kernels.NUMBER) > 0
    doc = np.repeat(np.arange(len(tokens.counts)), tokens.counts)[is_number]
    if len(doc) == 0:
        return np.zeros(0, np.uint64), np.zeros(len(tokens.counts) + 1, np.int64)
    pairs = np.unique(np.stack([doc.astype(np.uint64), tokens.hashes[is_number]]), axis=1)
    counts = np.bincount(pairs[0].astype(np.int64), minlength=len(tokens.counts))
    return pairs[1].copy(), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def overlaps(index: BenchmarkIndex, tokens: Words, mode: Mode) -> Overlaps:
    """Every (row, item) pair of the batch (its tokens, numbers not yet masked) that the rule flags."""
    tokens = tokens.masked(kernels.NUMBER, NUMBER_TOKEN)
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
        """Start every set's flagged-row count at zero."""
        self.rows_flagged = np.zeros(len(self.index.names), dtype=np.int64)

    def add(self, items: np.ndarray, row_set: np.ndarray) -> None:
        """`items`: the item each flagged row is attributed to; `row_set`: that item's set."""
        self.rows_flagged += np.bincount(row_set, minlength=len(self.index.names))
        self.items_hit.update(items.tolist())

    def as_dict(self, training_rows: int) -> dict[str, dict[str, object]]:
        """Per benchmark: rows flagged, items hit of all items, too-short items (stats.json)."""
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


def best_item_per_row(index: BenchmarkIndex, found: Overlaps, tokens: Words
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, item, coverage) for each flagged row, with the item it is attributed to.

    The module docstring says which item. `tokens`: the batch's tokens, numbers not masked.
    """
    if len(found.row) == 0:
        return found.row, found.item, found.coverage
    rows_numbers, rows_offsets = _number_sets(tokens)
    agree = np.array([
        np.isin(index.number_values[index.number_offsets[i]:index.number_offsets[i + 1]],
                rows_numbers[rows_offsets[r]:rows_offsets[r + 1]]).all()
        for r, i in zip(found.row.tolist(), found.item.tolist(), strict=True)], dtype=bool)
    order = np.lexsort((found.item, index.item_set[found.item], ~agree, -found.coverage, found.row))
    row, item, coverage = found.row[order], found.item[order], found.coverage[order]
    first = np.ones(len(row), dtype=bool)
    first[1:] = row[1:] != row[:-1]
    return row[first], item[first], coverage[first]
