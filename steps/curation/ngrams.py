r"""Words and word n-grams as 64-bit hashes: the one hashing path near-dup and decontamination share.

Why compiled: every later stage works on hashes, so tokenising and hashing decide the throughput.
A numpy version (byte classes, prefix-sum polynomial hashes) costs ~40 µs per 300-word document
and polars `str.split().explode().hash()` ~10 µs; the numba kernels (in `kernels`) do one pass
over the UTF-8 bytes of a whole Arrow batch (~4 µs per document) with no Python per document.
The hashes are our own arithmetic (random byte codes rotated and xor-ed per word,
cyclic-polynomial n-grams, a multiply-xorshift finaliser), so they are identical across runs,
machines, input orders and library versions.

Normalisation (the same for exact dedup, near-dup and decontamination): a text with non-ASCII
characters is NFKC-normalised and case-folded (Unicode TR15/UAX #44 compatibility caseless match:
NFC and NFD, full-width and half-width forms compare equal) and U+2212 MINUS SIGN becomes `-`;
ASCII text is lower-cased by the kernel itself.

Tokens, so that what carries meaning survives (case, spacing and sentence punctuation do not):
- words: runs of letters, marks and digits (`_` too); `.` `,` `:` between digits, and `.` before
  one, stay inside a number (`3.14`, `1,000`, `12:00`, `.5`), so `0,1` and `0.1` differ;
- symbols: every other ASCII symbol (`+ - * / = < > ^ % # & | ~ @ $ \ ( ) [ ] { }`, and `!` as an
  operator: `!=`, `!done`) and every Unicode math, currency or other symbol is a token of its own,
  so `x + 5` and `x - 5`, `C++` and `C#`, `84 * 1` and `84 / 1` differ;
- ideographs: each character of a script written without spaces (Han, kana, Thai, Lao, Khmer,
  Myanmar) is a token, so n-grams of them are character n-grams and one changed character in a
  sentence changes a few shingles, not the whole sentence-sized "word";
- separators: whitespace, `" ' \``, the other punctuation (ASCII and Unicode); `. ! ? ;`, a line
  break and `。` also end a segment (a sentence or line, flagged on its first token);
- a hyphen at a line break inside a word (`contami-\nnation`) joins the word.
Each token has flags: NUMBER (starts with a digit or `.5`), SYMBOL_TOKEN, IDEOGRAPH_TOKEN, SEGMENT_START, and
`mark_negations` adds NEGATION to negation words of the languages in NEGATIONS.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steps.curation import kernels

# Code point ranges of scripts written without spaces between words: one token per character.
IDEOGRAPHIC_RANGES = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x2E80, 0x2FDF),
                      (0x3005, 0x3007), (0x3040, 0x30FF), (0x3100, 0x312F), (0x31F0, 0x31FF),
                      (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
SENTENCE_ENDS = "\n.!?;\u3002\u0964\u0965\u061f\u06d4\u2028\u2029"
ASCII_SYMBOLS = "+-*/=<>^%#&|~@$\\()[]{}"
# Negation words (token sequences after normalisation); a difference in one keeps both rows.
NEGATIONS = (
    "not", "no", "never", "nor", "neither", "none", "nobody", "nothing", "nowhere", "without",
    "cannot", "t", "isn", "aren", "wasn", "weren", "don", "doesn", "didn", "won", "wouldn",
    "shouldn", "couldn", "hasn", "haven", "hadn", "mustn", "needn", "ain",  # en (n't -> n t)
    "não", "nao", "nem", "nunca", "nenhum", "nenhuma", "nada", "ninguém", "sem", "jamais",  # pt
    "ni", "nunca", "nadie", "ningún", "ninguna",  # es
    "ne", "pas", "jamais", "rien", "aucun", "aucune", "personne",  # fr
    "nicht", "kein", "keine", "keinen", "keinem", "keiner", "nie", "niemals", "nichts",  # de
    "не", "нет", "ни", "никогда", "ничего", "никто", "нигде", "без",  # ru
    "不", "没", "沒", "无", "無", "非", "未", "别", "別", "莫", "勿", "否",  # zh, ja kanji
    "ない", "ません", "ず", "ぬ", "なかった",  # ja
)


def _byte_codes() -> np.ndarray:
    """Byte -> random odd 64-bit code of its lowercased form (ASCII); never 0."""
    codes = np.random.default_rng(20240611).integers(1, 2**63, 256, dtype=np.uint64) | np.uint64(1)
    codes[ord("A"):ord("Z") + 1] = codes[ord("a"):ord("z") + 1]
    return codes


def _ascii_classes() -> np.ndarray:
    classes = np.full(128, kernels.SEP, dtype=np.uint8)
    for b in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
        classes[b] = kernels.WORD
    for b in ASCII_SYMBOLS.encode():
        classes[b] = kernels.SYMBOL
    for b in b"\n?;":
        classes[b] = kernels.SENTENCE_END
    for b in b".,:!-":
        classes[b] = kernels.CONTEXT
    return classes


def _category_class(char: str) -> int:
    category = unicodedata.category(char)
    if char in SENTENCE_ENDS:
        return kernels.SENTENCE_END
    if category == "Nd":
        return kernels.DIGIT
    if category[0] in "LMN":
        return kernels.WORD
    if category in ("Sm", "Sc", "So"):
        return kernels.SYMBOL
    return kernels.SEP  # Z*, C*, P*, Sk (modifier symbols: accents, ^ handled as ASCII)


@cache
def _bmp_classes() -> np.ndarray:
    """Class of every code point below U+10000 (built once, ~30 ms)."""
    classes = np.array([_category_class(chr(cp)) for cp in range(0x10000)], dtype=np.uint8)
    for lo, hi in IDEOGRAPHIC_RANGES:
        block = classes[lo:hi + 1]
        block[(block == kernels.WORD) | (block == kernels.DIGIT)] = kernels.IDEOGRAPH
    classes[:128] = _ascii_classes()
    return classes


_BYTE_CODES = _byte_codes()
_ASCII_CLASSES = _ascii_classes()
_MINUS = str.maketrans({"\u2212": "-"})


def normalise(text: str) -> str:
    """NFKC + case folding (+ U+2212 as `-`) of one text, as the tokeniser sees non-ASCII text."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold()).translate(
        _MINUS)


@dataclass(frozen=True)
class Words:
    """Token hashes of a batch of texts in CSR form: doc i's tokens are hashes[offsets[i]:offsets[i+1]]."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len = docs + 1
    text_keys: np.ndarray  # uint64 per doc: hash of its token sequence (the exact-dedup key)
    flags: np.ndarray  # uint8 per token: kernels.NUMBER | SYMBOL_TOKEN | ... (see module docstring)
    word_counts: np.ndarray  # int64 per doc: tokens that are not symbols

    @property
    def counts(self) -> np.ndarray:
        """Tokens per text, shape (texts,)."""
        return np.diff(self.offsets)

    def masked(self, flag: int, value: int) -> Words:
        """The same tokens with every token flagged `flag` hashed as `value`."""
        hashes = np.where(self.flags & flag, np.uint64(value), self.hashes)
        return Words(hashes, self.offsets, self.text_keys, self.flags, self.word_counts)


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes and the offsets (int32 or int64) of a string array, without copies."""
    large = pa.types.is_large_string(array.type)
    data_buffer = array.buffers()[2]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if large else np.int32)
    return data, offsets[array.offset:array.offset + len(array) + 1]


def words(texts: pa.Array | pa.ChunkedArray) -> Words:
    """Normalise and tokenise `texts` (nulls count as empty) into token hashes and flags."""
    array = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if array.null_count:
        array = pc.fill_null(array, "")
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    data, offsets = _buffers(array)
    unicode = bool(offsets[-1] > offsets[0] and data[offsets[0]:offsets[-1]].max() >= 0x80)
    if unicode:  # only the texts with non-ASCII characters go through Python's normalisation
        other = pc.invert(pc.string_is_ascii(array))
        folded = [normalise(t) for t in array.filter(other).to_pylist()]
        array = pc.replace_with_mask(array, other, pa.array(folded, array.type))
        data, offsets = _buffers(array)
    hashes, flags, word_offsets, keys, counts = kernels.tokenise(
        data, offsets, _BYTE_CODES, _ASCII_CLASSES, _bmp_classes() if unicode else _ASCII_CLASSES,
        unicode)
    return Words(hashes, word_offsets, keys, flags, counts)


@cache
def _negation_patterns() -> tuple[np.ndarray, np.ndarray]:
    tokens = words(pa.array(NEGATIONS, pa.large_string()))
    return tokens.hashes, tokens.offsets


def mark_negations(tokens: Words) -> None:
    """Add the NEGATION flag (in place) to the tokens of every word of NEGATIONS."""
    hashes, offsets = _negation_patterns()
    kernels.mark_patterns(tokens.hashes, tokens.offsets, tokens.flags, hashes, offsets,
                          kernels.NEGATION)


def ngrams(batch: Words, n: int, *, short_as_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram per document, CSR (grams, offsets).

    `short_as_one`: a document with fewer than n words (but at least one) yields one gram of all
    its words, so short texts can still match (near-dup); otherwise it yields none (decontamination,
    where an 8-gram rule cannot apply to shorter texts).
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    return kernels.ngrams(batch.hashes, batch.offsets, n, short_as_one)
