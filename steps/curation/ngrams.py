"""Words and word n-grams as 64-bit hashes: the one hashing path near-dup and decontamination share.

Why compiled: every later stage works on hashes, so tokenising and hashing decide the throughput.
A numpy version (byte classes, prefix-sum polynomial hashes) costs ~40 µs per 300-word document
and polars `str.split().explode().hash()` ~10 µs; these numba kernels do one pass over the UTF-8
bytes of a whole Arrow batch (~4 µs per document) with no Python per document. The hashes are
our own arithmetic (random byte codes rotated and xor-ed per word, polynomial n-grams, murmur3's
finaliser), so they are identical across runs, machines, input orders and library versions.

Tokenisation is `\\w+`-like on lowercased text: ASCII letters, digits and `_` form words, every
other ASCII byte separates; non-ASCII bytes are word bytes except common Unicode punctuation
(U+00A0–U+00BF, U+2000–U+206F, U+3000–U+303F), which separates. Scripts written without spaces
(Chinese, Japanese, Thai) therefore yield sentence-sized "words".
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _byte_codes() -> np.ndarray:
    """Byte -> random odd 64-bit code of its lowercased form, or 0 for a separator byte."""
    codes = np.random.default_rng(20240611).integers(1, 2**63, 256, dtype=np.uint64) | np.uint64(1)
    codes[ord("A"):ord("Z") + 1] = codes[ord("a"):ord("z") + 1]
    word_bytes = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    word_bytes |= set(range(0x80, 0x100))
    codes[[b for b in range(256) if b not in word_bytes]] = 0
    return codes


_BYTE_CODES = _byte_codes()
_GRAM_PRIME = np.uint64(0x9FB21C651E98DF25)  # odd: the polynomial's base
_KEY_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True, inline="always")
def fmix64(h: np.uint64) -> np.uint64:
    """murmur3's 64-bit finaliser: every input bit flips each output bit with p ≈ 1/2."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@numba.njit(cache=True)
def _separator_length(data: np.ndarray, i: int, end: int) -> int:
    """Bytes of a Unicode punctuation sequence starting at data[i], or 0 when it is not one."""
    lead = data[i]
    if lead == 0xC2 and i + 1 < end and 0xA0 <= data[i + 1] <= 0xBF:
        return 2
    if (lead == 0xE2 and i + 2 < end and 0x80 <= data[i + 1] <= 0x81) or (
        lead == 0xE3 and i + 2 < end and data[i + 1] == 0x80
    ):
        return 3
    return 0


@numba.njit(cache=True)
def _tokenise(data, offsets, codes, unicode):
    """Word hashes h = rotl(h, 7) ^ code(byte) over each word's bytes, and a key per document.

    The byte loop is branch-light on purpose (a word end is a masked store, not a branch):
    mispredicted branches at every word boundary cost more than the hashing itself.
    """
    n_docs = offsets.shape[0] - 1
    # Room for a word per 4 bytes, grown when a document could overflow it (at most a word per
    # 2 bytes): the worst-case size up front costs page faults on every batch.
    hashes = np.empty((offsets[n_docs] - offsets[0]) // 4 + n_docs + 1, dtype=np.uint64)
    word_offsets = np.empty(n_docs + 1, dtype=np.int64)
    text_keys = np.empty(n_docs, dtype=np.uint64)
    zero = np.uint64(0)
    n = 0
    for d in range(n_docs):
        word_offsets[d] = n
        need = n + (offsets[d + 1] - offsets[d]) // 2 + 2
        if need > hashes.shape[0]:
            grown = np.empty(max(need, 2 * hashes.shape[0]), dtype=np.uint64)
            grown[:n] = hashes[:n]
            hashes = grown
        h = zero
        in_word = 0
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            byte = data[i]
            code = codes[byte]
            step = 1
            if unicode and byte >= 0x80:  # loop-invariant flag: ASCII batches skip this test
                sep = _separator_length(data, i, end)
                if sep:
                    code = zero
                    step = sep
            is_word = 1 if code != zero else 0
            hashes[n] = h
            n += in_word & (is_word ^ 1)
            h = (((h << np.uint64(7)) | (h >> np.uint64(57))) ^ code) if is_word else zero
            in_word = is_word
            i += step
        hashes[n] = h
        n += in_word
        key = np.uint64(0x9E3779B97F4A7C15)
        for j in range(word_offsets[d], n):
            key = (key ^ hashes[j]) * _KEY_PRIME
        text_keys[d] = fmix64(key ^ np.uint64(n - word_offsets[d]))
    word_offsets[n_docs] = n
    return hashes[:n].copy(), word_offsets, text_keys


@numba.njit(cache=True, inline="always")
def roll(acc: np.uint64, leaving: np.uint64, entering: np.uint64, top: np.uint64) -> np.uint64:
    """Slide the polynomial n-gram hash one word: drop `leaving` (weight `top`), add `entering`."""
    return (acc - leaving * top) * _GRAM_PRIME + entering


@numba.njit(cache=True, inline="always")
def first_gram(words, start, width):
    """(polynomial hash of words[start:start+width], P^(width-1)), the state `roll` continues."""
    top = np.uint64(1)
    acc = np.uint64(0)
    for k in range(width):
        acc = acc * _GRAM_PRIME + words[start + k]
        if k:
            top *= _GRAM_PRIME
    return acc, top


@numba.njit(cache=True)
def _ngrams(words, word_offsets, n, short_as_one):
    """Gram hashes: fmix64 of the polynomial sum(w[i+k] * P^(width-1-k)), rolled along the text."""
    n_docs = word_offsets.shape[0] - 1
    total = 0
    for d in range(n_docs):
        length = word_offsets[d + 1] - word_offsets[d]
        total += max(length - n + 1, 1 if (short_as_one and length > 0) else 0)
    grams = np.empty(total, dtype=np.uint64)
    gram_offsets = np.empty(n_docs + 1, dtype=np.int64)
    g = 0
    for d in range(n_docs):
        gram_offsets[d] = g
        start = word_offsets[d]
        length = word_offsets[d + 1] - start
        width = n if length >= n else (length if short_as_one else 0)
        if width == 0:
            continue
        acc, top = first_gram(words, start, width)
        grams[g] = fmix64(acc)
        g += 1
        for i in range(start + width, start + length):
            acc = roll(acc, words[i - width], words[i], top)
            grams[g] = fmix64(acc)
            g += 1
    gram_offsets[n_docs] = g
    return grams, gram_offsets


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
    hashes, word_offsets, keys = _tokenise(data, offsets, _BYTE_CODES, unicode)
    return Words(hashes, word_offsets, keys)


def ngrams(batch: Words, n: int, *, short_as_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram per document, CSR (grams, offsets).

    `short_as_one`: a document with fewer than n words (but at least one) yields one gram of all
    its words, so short texts can still match (near-dup); otherwise it yields none (decontamination,
    where an 8-gram rule cannot apply to shorter texts).
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    return _ngrams(batch.hashes, batch.offsets, n, short_as_one)
