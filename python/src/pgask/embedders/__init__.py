"""Embedding providers: the offline local model and OpenAI-compatible endpoints.

Nothing heavy is imported here: rag._python_init() imports pgask.embedders.shared_process in
every backend, and a connection that never embeds must not load numpy or the model."""

from __future__ import annotations


def vector_literal(vector) -> str:
    """pgvector's text form of a vector (what PL/Python hands to vector_in): a numpy array
    or a sequence of Python floats holding the same float32 values give the same text."""
    values = vector.tolist() if hasattr(vector, "tolist") else vector
    return "[" + ",".join(f"{x:.7g}" for x in values) + "]"


def __getattr__(name: str):
    if name in ("LocalEmbedder", "get_local_embedder"):
        from pgask.embedders import local

        return getattr(local, name)
    raise AttributeError(f"module 'pgask.embedders' has no attribute {name!r}")


__all__ = ["LocalEmbedder", "get_local_embedder", "vector_literal"]  # noqa: F822 - lazy
