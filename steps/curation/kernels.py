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


# Character classes of the tokeniser (the `classes` tables of `ngrams`).
SEP, WORD, SYMBOL, IDEOGRAPH, SENTENCE_END, CONTEXT, DIGIT = 0, 1, 2, 3, 4, 5, 6
# Token flags (one byte per token).
NUMBER, SYMBOL_TOKEN, SEGMENT_START, IDEOGRAPH_TOKEN, NEGATION = 1, 2, 4, 8, 16


@numba.njit(cache=True, inline="always")
def _ascii_word(byte) -> bool:
    return (0x61 <= byte <= 0x7A) or (0x41 <= byte <= 0x5A) or (0x30 <= byte <= 0x39) or byte == 0x5F


@numba.njit(cache=True, inline="always")
def _digit(byte) -> bool:
    return 0x30 <= byte <= 0x39


@numba.njit(cache=True)
def _utf8_char(data, i, end):
    """(code point, bytes) of the UTF-8 sequence at data[i]; a malformed one is one byte."""
    lead = data[i]
    if lead >= 0xF0:
        size, cp = 4, lead & 0x07
    elif lead >= 0xE0:
        size, cp = 3, lead & 0x0F
    elif lead >= 0xC0:
        size, cp = 2, lead & 0x1F
    else:
        return np.int64(-1), 1
    if i + size > end:
        return np.int64(-1), 1
    for k in range(1, size):
        cp = (cp << 6) | (data[i + k] & 0x3F)
    return np.int64(cp), size


@numba.njit(cache=True)
def _context_class(data, i, end, in_word, prev):
    """Class and width of `. , : ! -`, which depend on their neighbours (see `ngrams`)."""
    byte = data[i]
    nxt = data[i + 1] if i + 1 < end else 0
    if byte == 0x2E:  # '.' inside or before a number ("3.14", ".5") belongs to it
        if _digit(nxt) and (_digit(prev) or not in_word):
            return WORD, 1
        return SENTENCE_END, 1
    if byte == 0x2C or byte == 0x3A:  # ',' ':' between digits ("1,000", "12:00")
        return (WORD, 1) if in_word and _digit(prev) and _digit(nxt) else (SEP, 1)
    if byte == 0x21:  # '!' as an operator ("!=", "!done"), else sentence punctuation
        if nxt == 0x3D or (not in_word and (_ascii_word(nxt) or nxt >= 0x80 or nxt == 0x28)):
            return SYMBOL, 1
        return SENTENCE_END, 1
    # '-': a hyphenated line wrap inside a word ("contami-\nnation") joins the two halves.
    if in_word:
        j = i + 1
        while j < end and (data[j] == 0x20 or data[j] == 0x09 or data[j] == 0x0D):
            j += 1
        if j < end and data[j] == 0x0A:
            j += 1
            while j < end and (data[j] == 0x20 or data[j] == 0x09):
                j += 1
            if j < end and (_ascii_word(data[j]) or data[j] >= 0x80):
                return CONTEXT, j - i
    return SYMBOL, 1


@numba.njit(cache=True)
def tokenise(data, offsets, codes, ascii_classes, bmp_classes, unicode):
    """Token hashes h = rotl(h, 7) ^ code(byte) over each token's bytes, and token flags.

    Also a key and a word count per document (see `ngrams` for the classes; the text is
    normalised already).
    """
    n_docs = offsets.shape[0] - 1
    # Room for a token per 4 bytes, grown when a document could overflow it (at most one per
    # byte): the worst-case size up front costs page faults on every batch.
    size = (offsets[n_docs] - offsets[0]) // 4 + n_docs + 1
    hashes = np.empty(size, dtype=np.uint64)
    flags = np.empty(size, dtype=np.uint8)
    word_offsets = np.empty(n_docs + 1, dtype=np.int64)
    text_keys = np.empty(n_docs, dtype=np.uint64)
    word_counts = np.zeros(n_docs, dtype=np.int64)
    zero = np.uint64(0)
    n = 0
    for d in range(n_docs):
        word_offsets[d] = n
        i = offsets[d]
        end = offsets[d + 1]
        need = n + (end - i) + 2
        if need > hashes.shape[0]:
            grown = max(need, 2 * hashes.shape[0])
            more = np.empty(grown, dtype=np.uint64)
            more[:n] = hashes[:n]
            hashes = more
            more_flags = np.empty(grown, dtype=np.uint8)
            more_flags[:n] = flags[:n]
            flags = more_flags
        h = zero
        in_word = False
        has_digit = False
        segment = SEGMENT_START
        prev = 0
        while i < end:
            byte = data[i]
            step = 1
            if byte < 0x80:
                cls = ascii_classes[byte]
                if cls == WORD:  # the common case first, without the general branches below
                    if not in_word:
                        has_digit = _digit(byte)
                        in_word = True
                    h = ((h << np.uint64(7)) | (h >> np.uint64(57))) ^ codes[byte]
                    prev = byte
                    i += 1
                    continue
                if cls == CONTEXT:
                    cls, step = _context_class(data, i, end, in_word, prev)
            elif unicode:
                cp, step = _utf8_char(data, i, end)
                if cp < 0:
                    cls = WORD
                elif cp < 0x10000:
                    cls = bmp_classes[cp]
                elif 0x20000 <= cp < 0x40000:
                    cls = IDEOGRAPH
                elif 0x1F000 <= cp < 0x1FB00:
                    cls = SYMBOL
                else:
                    cls = WORD
            else:
                cls = WORD
            if cls in (WORD, DIGIT):
                for k in range(step):
                    h = ((h << np.uint64(7)) | (h >> np.uint64(57))) ^ codes[data[i + k]]
                if not in_word:  # a number is a token that starts like one: "42", "5x", ".5"
                    has_digit = cls == DIGIT or _digit(byte) or byte == 0x2E
                in_word = True
            elif cls != CONTEXT:  # CONTEXT here: a line-wrap hyphen, the word goes on
                if in_word:
                    hashes[n] = h
                    flags[n] = (NUMBER if has_digit else 0) | segment
                    word_counts[d] += 1
                    n += 1
                    segment = 0
                    h = zero
                    in_word = False
                    has_digit = False
                if cls in (SYMBOL, IDEOGRAPH):
                    t = np.uint64(0x51ED27)
                    for k in range(step):
                        t = ((t << np.uint64(7)) | (t >> np.uint64(57))) ^ codes[data[i + k]]
                    hashes[n] = t
                    flags[n] = (SYMBOL_TOKEN if cls == SYMBOL else IDEOGRAPH_TOKEN) | segment
                    if cls == IDEOGRAPH:
                        word_counts[d] += 1
                    n += 1
                    segment = 0
                elif cls == SENTENCE_END:
                    segment = SEGMENT_START
            prev = byte
            i += step
        if in_word:
            hashes[n] = h
            flags[n] = (NUMBER if has_digit else 0) | segment
            word_counts[d] += 1
            n += 1
        key = np.uint64(0x9E3779B97F4A7C15)
        for j in range(word_offsets[d], n):
            key = (key ^ hashes[j]) * _KEY_PRIME
        text_keys[d] = fmix64(key ^ np.uint64(n - word_offsets[d]))
    word_offsets[n_docs] = n
    return hashes[:n], flags[:n], word_offsets, text_keys, word_counts


@numba.njit(cache=True)
def mark_patterns(hashes, offsets, flags, pattern_hashes, pattern_offsets, bit):
    """Set `bit` in the flags of every token inside an occurrence of a pattern (a token sequence)."""
    n_docs = offsets.shape[0] - 1
    for d in range(n_docs):
        for i in range(offsets[d], offsets[d + 1]):
            for p in range(pattern_offsets.shape[0] - 1):
                a, b = pattern_offsets[p], pattern_offsets[p + 1]
                if i + (b - a) > offsets[d + 1] or hashes[i] != pattern_hashes[a]:
                    continue
                same = True
                for k in range(1, b - a):
                    if hashes[i + k] != pattern_hashes[a + k]:
                        same = False
                        break
                if same:
                    for k in range(b - a):
                        flags[i + k] |= bit


@numba.njit(cache=True, inline="always")
def rotl(x: np.uint64, r: int) -> np.uint64:
    """Rotate the 64-bit `x` left by `r` bits (mod 64)."""
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
    """Finalise a gram state by xor-multiply-xor.

    One multiply is enough for word hashes that are random already; near-dup takes bins from its
    high half and values from its low half.
    """
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


@numba.njit(cache=True, inline="always")
def _run_width(size, max_pairs):
    """Partners per row in a run of equal keys.

    All later rows while the run's pairs fit in `max_pairs`, else the next max_pairs // size rows (a
    degenerate key must not go quadratic).
    """
    return size - 1 if size * (size - 1) // 2 <= max_pairs else max(1, max_pairs // size)


@numba.njit(cache=True)
def run_pairs(sorted_keys, order, max_pairs):
    """Pairs (a, b), a < b, of rows whose keys are equal, and the rows left unpaired.

    The count is of rows in runs too big to pair completely (see `_run_width`).
    """
    n = sorted_keys.shape[0]
    count = 0
    oversized = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        width = _run_width(j - i, max_pairs)
        for x in range(i, j):
            count += min(width, j - 1 - x)
        if width < j - i - 1:
            oversized += j - i
        i = j
    pairs = np.empty((count, 2), dtype=np.int64)
    p = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_keys[j] == sorted_keys[i]:
            j += 1
        width = _run_width(j - i, max_pairs)
        for x in range(i, j):
            for y in range(x + 1, min(j, x + 1 + width)):
                a = order[x]
                b = order[y]
                pairs[p, 0] = min(a, b)
                pairs[p, 1] = max(a, b)
                p += 1
        i = j
    return pairs, oversized


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


@numba.njit(cache=True)
def _contains(values, start, stop, x):
    """Whether the sorted values[start:stop] hold x (binary search)."""
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < stop and values[lo] == x


@numba.njit(cache=True)
def _side_differs(a, b, values, offsets, grams, gram_offsets, tokens, flags, token_offsets, width,
                  share, substance):
    """Whether document a holds content that b lacks.

    A token covered by no shingle of b (the shared text set aside) that is `substance`, or such tokens
    making over `share` of a segment (any of them in a segment holding a symbol). A common prefix or
    suffix counts as shared too (the shingles at a text's edges are padded).
    """
    t0, t1 = token_offsets[a], token_offsets[a + 1]
    u0, u1 = token_offsets[b], token_offsets[b + 1]
    length = t1 - t0
    w = width if length >= width else length
    matched = np.zeros(length, dtype=np.bool_)
    for g in range(gram_offsets[a], gram_offsets[a + 1]):
        if _contains(values, offsets[b], offsets[b + 1], grams[g]):
            first = g - gram_offsets[a]
            matched[first:first + w] = True
    k = 0
    while k < length and k < u1 - u0 and tokens[t0 + k] == tokens[u0 + k]:
        matched[k] = True
        k += 1
    k = 1
    while k <= length and k <= u1 - u0 and tokens[t1 - k] == tokens[u1 - k]:
        matched[length - k] = True
        k += 1
    start = 0
    unmatched = 0
    code = False  # a segment with symbols is code or math: any change in it is another task
    for t in range(length + 1):
        if t == length or (t > 0 and flags[t0 + t] & SEGMENT_START):
            if unmatched > (0 if code else share * (t - start)):
                return True
            start = t
            unmatched = 0
            code = False
        if t < length:
            code = code or (flags[t0 + t] & SYMBOL_TOKEN) != 0
            if not matched[t]:
                if flags[t0 + t] & substance:
                    return True
                unmatched += 1
    return False


@numba.njit(cache=True)
def multiset_keys(hashes, offsets, flags, wanted):
    """Per document, an order-free key of the multiset of its tokens flagged `wanted`.

    A sum of mixed hashes: equal multisets give equal keys, so `1 / 2` and `1 // 2` differ.
    """
    n_docs = offsets.shape[0] - 1
    keys = np.zeros(n_docs, dtype=np.uint64)
    for d in range(n_docs):
        key = np.uint64(0)
        for i in range(offsets[d], offsets[d + 1]):
            if flags[i] & wanted:
                key += fmix64(hashes[i] ^ np.uint64(0x5BD1E995))
        keys[d] = key
    return keys


@numba.njit(cache=True)
def differs(values, offsets, grams, gram_offsets, tokens, flags, token_offsets, substance_keys, left,
            right, width, share, substance):
    """Per pair (left[i], right[i]).

    Whether the two hold different numbers, symbols and negations (as multisets), or either side holds
    content the other lacks.
    """
    out = np.zeros(left.shape[0], dtype=np.bool_)
    for p in range(left.shape[0]):
        a, b = left[p], right[p]
        out[p] = substance_keys[a] != substance_keys[b] or _side_differs(
            a, b, values, offsets, grams, gram_offsets, tokens, flags, token_offsets, width, share,
            substance) or _side_differs(
            b, a, values, offsets, grams, gram_offsets, tokens, flags, token_offsets, width, share,
            substance)
    return out


@numba.njit(cache=True)
def keep_greedy(pairs, similarity, rank, n_rows):
    """Keep one row per group of verified near-duplicates, visiting rows in rank order.

    A row is removed as a duplicate of its most similar neighbour that is kept and of smaller rank (ties:
    smaller rank), so it is a verified pair with the row it names. Returns duplicate_of (-1 = kept) and
    the similarity to that row.
    """
    degree = np.zeros(n_rows + 1, dtype=np.int64)
    for p in range(pairs.shape[0]):
        degree[pairs[p, 0] + 1] += 1
        degree[pairs[p, 1] + 1] += 1
    starts = np.cumsum(degree)
    fill = starts[:-1].copy()
    neighbour = np.empty(2 * pairs.shape[0], dtype=np.int64)
    weight = np.empty(2 * pairs.shape[0], dtype=np.float64)
    for p in range(pairs.shape[0]):
        a, b = pairs[p, 0], pairs[p, 1]
        neighbour[fill[a]], weight[fill[a]] = b, similarity[p]
        fill[a] += 1
        neighbour[fill[b]], weight[fill[b]] = a, similarity[p]
        fill[b] += 1
    duplicate_of = np.full(n_rows, -1, dtype=np.int64)
    best_similarity = np.zeros(n_rows, dtype=np.float64)
    involved = np.flatnonzero(degree[1:] > 0)
    for r in involved[np.argsort(rank[involved], kind="mergesort")]:
        best = -1
        for k in range(starts[r], starts[r + 1]):
            other = neighbour[k]
            if rank[other] >= rank[r] or duplicate_of[other] >= 0:
                continue
            if best < 0 or weight[k] > best_similarity[r] or (
                    weight[k] == best_similarity[r] and rank[other] < rank[best]):
                best = other
                best_similarity[r] = weight[k]
        duplicate_of[r] = best
    return duplicate_of, best_similarity


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
    """A blocked Bloom filter of `grams`: `blocks` uint64 words, block = gram >> shift."""
    bitmap = np.zeros(blocks, dtype=np.uint64)
    for g in grams:
        bitmap[g >> shift] |= bloom_mask(g)
    return bitmap
