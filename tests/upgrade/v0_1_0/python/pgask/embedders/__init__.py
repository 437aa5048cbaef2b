"""Embedding providers: the offline local model and OpenAI-compatible endpoints."""

import numpy as np

from pgask.embedders.local import LocalEmbedder, get_local_embedder


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector (what PL/Python hands to vector_in)."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


__all__ = ["LocalEmbedder", "get_local_embedder", "vector_literal"]
