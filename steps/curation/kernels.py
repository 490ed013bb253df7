"""Every numba kernel of curation, in one file on purpose.

numba's on-disk cache (cache=True) notices edits to a kernel's own file only: a kernel that
inlines a helper from another file would keep running the helper's old code after that file
changed. Tokenising, n-gram hashing, MinHash signatures and the decontamination scan share
helpers (their hashes must match bit for bit), so they live together here. The modules that use
them (`ngrams`, `near_dup`, `decontaminate`) say what the kernels are for; this file says how.
"""

from __future__ import annotations

import numba
import numpy as np

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
def separator_length(data: np.ndarray, i: int, end: int) -> int:
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
def tokenise(data, offsets, codes, unicode):
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
                sep = separator_length(data, i, end)
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
    return hashes[:n], word_offsets, text_keys


@numba.njit(cache=True, inline="always")
def rotl(x: np.uint64, r: int) -> np.uint64:
    r &= 63
    return (x << np.uint64(r)) | (x >> np.uint64((64 - r) & 63)) if r else x


@numba.njit(cache=True, inline="always")
def first_gram(words, start, width):
    """Cyclic-polynomial (buzhash) state of words[start:start+width]: xor of rotl(w_k, width-1-k)."""
    acc = np.uint64(0)
    for k in range(width):
        acc = rotl(acc, 1) ^ words[start + k]
    return acc


@numba.njit(cache=True, inline="always")
def roll(acc: np.uint64, leaving: np.uint64, entering: np.uint64, width: int) -> np.uint64:
    """Slide the n-gram state one word: no multiply, so rolling costs ~3 cycles per word."""
    return rotl(acc, 1) ^ rotl(leaving, width) ^ entering


@numba.njit(cache=True, inline="always")
def gram_hash(acc: np.uint64) -> np.uint64:
    """Finalise a gram state (xor-multiply-xor: one multiply, enough for word hashes that are
    random already); near-dup takes bins from its high half and values from its low half."""
    acc ^= acc >> np.uint64(32)
    acc *= np.uint64(0xD6E8FEB86659FD93)
    return acc ^ (acc >> np.uint64(32))


@numba.njit(cache=True)
def ngrams(words, word_offsets, n, short_as_one):
    """Gram hashes: `gram_hash` of the buzhash state, rolled along each text."""
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
        acc = first_gram(words, start, width)
        grams[g] = gram_hash(acc)
        g += 1
        for i in range(start + width, start + length):
            acc = roll(acc, words[i - width], words[i], width)
            grams[g] = gram_hash(acc)
            g += 1
    gram_offsets[n_docs] = g
    return grams, gram_offsets


_PROBE = np.uint64(0x9E3779B97F4A7C15)
_BAND_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True)
def band_keys(grams, gram_offsets, bands, rows):
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
def run_pairs(sorted_keys, order, max_run):
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
def shingle_sets(grams, gram_offsets):
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
def jaccard(values, offsets, left, right):
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


@numba.njit(cache=True, inline="always")
def bloom_mask(g: np.uint64) -> np.uint64:
    """Three bits of one 64-bit bloom block, from hash bits that do not pick the block."""
    one = np.uint64(1)
    return ((one << (g & np.uint64(63))) | (one << ((g >> np.uint64(6)) & np.uint64(63)))
            | (one << ((g >> np.uint64(12)) & np.uint64(63))))


@numba.njit(cache=True)
def scan(words, word_offsets, n, bitmap, shift, table, bucket_starts, bucket_shift):
    """(doc, first, last) for every row n-gram found in the sorted item n-gram `table`.

    The n-grams are rolled here rather than read from `ngrams()` output: the same hashes, without
    writing and re-reading an array of them (this loop is the decontamination hot path).
    """
    n_docs = word_offsets.shape[0] - 1
    docs = []
    firsts = []
    lasts = []
    for d in range(n_docs):
        start = word_offsets[d]
        end = word_offsets[d + 1]
        if end - start < n:
            continue
        acc = first_gram(words, start, n)
        i = start + n
        while True:
            g = gram_hash(acc)
            mask = bloom_mask(g)
            if bitmap[g >> shift] & mask == mask:
                bucket = g >> bucket_shift
                first = bucket_starts[bucket]
                stop = bucket_starts[bucket + np.uint64(1)]
                while first < stop and table[first] < g:
                    first += 1
                last = first
                while last < stop and table[last] == g:
                    last += 1
                if last > first:
                    docs.append(d)
                    firsts.append(first)
                    lasts.append(last)
            if i == end:
                break
            acc = roll(acc, words[i - n], words[i], n)
            i += 1
    return (np.array(docs, dtype=np.int64), np.array(firsts, dtype=np.int64),
            np.array(lasts, dtype=np.int64))


@numba.njit(cache=True)
def bloom_filter(grams, blocks, shift):
    bitmap = np.zeros(blocks, dtype=np.uint64)
    for g in grams:
        bitmap[g >> shift] |= bloom_mask(g)
    return bitmap
