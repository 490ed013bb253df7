"""Words and word n-grams as 64-bit hashes: the one hashing path near-dup and decontamination share.

Why compiled: every later stage works on hashes, so tokenising and hashing decide the throughput.
A numpy version (byte classes, prefix-sum polynomial hashes) costs ~40 µs per 300-word document
and polars `str.split().explode().hash()` ~10 µs; the numba kernels (in `kernels`) do one pass
over the UTF-8 bytes of a whole Arrow batch (~4 µs per document) with no Python per document.
The hashes are our own arithmetic (random byte codes rotated and xor-ed per word,
cyclic-polynomial n-grams, a multiply-xorshift finaliser), so they are identical across runs,
machines, input orders and library versions.

Tokenisation is `\\w+`-like on lowercased text: ASCII letters, digits and `_` form words, every
other ASCII byte separates; non-ASCII bytes are word bytes except common Unicode punctuation
(U+00A0–U+00BF, U+2000–U+206F, U+3000–U+303F), which separates. Scripts written without spaces
(Chinese, Japanese, Thai) therefore yield sentence-sized "words".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps.curation import kernels


def _byte_codes() -> np.ndarray:
    """Byte -> random odd 64-bit code of its lowercased form, or 0 for a separator byte."""
    codes = np.random.default_rng(20240611).integers(1, 2**63, 256, dtype=np.uint64) | np.uint64(1)
    codes[ord("A"):ord("Z") + 1] = codes[ord("a"):ord("z") + 1]
    word_bytes = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    word_bytes |= set(range(0x80, 0x100))
    codes[[b for b in range(256) if b not in word_bytes]] = 0
    return codes


_BYTE_CODES = _byte_codes()
@dataclass(frozen=True)
class Words:
    """Word hashes of a batch of texts in CSR form: doc i's words are hashes[offsets[i]:offsets[i+1]]."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len = docs + 1
    text_keys: np.ndarray  # uint64 per doc: hash of its word sequence (the exact-dedup key)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes and the offsets (int32 or int64) of a string array, without copies."""
    large = pa.types.is_large_string(array.type)
    data_buffer = array.buffers()[2]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if large else np.int32)
    return data, offsets[array.offset:array.offset + len(array) + 1]


def words(texts: pa.Array | pa.ChunkedArray) -> Words:
    """Lowercase and tokenise `texts` (nulls count as empty) into word hashes."""
    array = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if array.null_count:
        array = pc.fill_null(array, "")
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    data, offsets = _buffers(array)
    unicode = bool(offsets[-1] > offsets[0] and data[offsets[0]:offsets[-1]].max() >= 0x80)
    if unicode:
        data, offsets = _buffers(pc.utf8_lower(array))  # Unicode case folding (kernel: ASCII)
    hashes, word_offsets, keys = kernels.tokenise(data, offsets, _BYTE_CODES, unicode)
    return Words(hashes, word_offsets, keys)


def ngrams(batch: Words, n: int, *, short_as_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram per document, CSR (grams, offsets).

    `short_as_one`: a document with fewer than n words (but at least one) yields one gram of all
    its words, so short texts can still match (near-dup); otherwise it yields none (decontamination,
    where an 8-gram rule cannot apply to shorter texts).
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    return kernels.ngrams(batch.hashes, batch.offsets, n, short_as_one)
