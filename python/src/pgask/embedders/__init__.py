"""Embedding providers. Only the offline local model exists so far; remote ones plug in here."""

from pgask.embedders.local import LocalEmbedder, get_local_embedder

__all__ = ["LocalEmbedder", "get_local_embedder"]
