"""Tokenizers that say how long a text is for an engine (`Tokenize`: text -> token ids).

Seeds are cut to an engine's context by its own tokens (`steps.seeds.fit_seeds`); the table in
`steps.engines` says which tokenizer an engine spec has (`EngineSpec.tokenizer`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from steps.errors import UserError

Tokenize = Callable[[str], Sequence[int]]


def utf8_bytes(text: str) -> bytes:
    """A `Tokenize` for engines whose tokenizer is unknown.

    UTF-8 bytes, an upper bound on the tokens of byte-level BPE tokenizers (GPT-2/Llama-3/Qwen style), so
    a cut by it always fits.
    """
    return text.encode("utf-8")


class LlamaCppTokenizer:
    """The tokenizer of a GGUF model exactly as llama.cpp applies it: a `Tokenize`.

    Loads the vocabulary only (no weights, no context, so nothing of llama.cpp's compute runs in
    this process before distilabel forks its workers), through llama.cpp's C API.
    """

    def __init__(self, model_path: str) -> None:
        """Load only the vocabulary of the GGUF at `model_path` (no weights).

        Raises:
            UserError: llama.cpp cannot read the file's vocabulary.
        """
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # as Llama(verbose=False)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
        if not model:
            raise UserError(f"engine: cannot read the vocabulary of {Path(model_path).name}")
        weakref.finalize(self, llama_cpp.llama_model_free, model)  # also at exit, in order
        self._api, self._vocab = llama_cpp, llama_cpp.llama_model_get_vocab(model)

    def __call__(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS; special tokens count as text."""
        data = text.encode("utf-8")
        size = len(data) + 8  # a byte-level vocabulary never needs more tokens than bytes
        while True:
            tokens = (self._api.llama_token * size)()
            count = self._api.llama_tokenize(self._vocab, data, len(data), tokens, size,
                                             False, False)  # no BOS; special tokens as text
            if count >= 0:
                return tokens[:count]
            size = -count  # too small: llama.cpp says how many it needs
