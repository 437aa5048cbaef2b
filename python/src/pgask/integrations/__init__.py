"""Retrievers for the frameworks users already have, over rag.search.

Each module imports its framework at import time and is installed with an extra:
`pip install 'pgask[langchain]'` (pgask.integrations.langchain) or
`pip install 'pgask[llamaindex]'` (pgask.integrations.llamaindex). Both return the chunks of
rag.search with a citation and the chunk's metadata, so answers built on them can cite.
"""

from __future__ import annotations

from typing import Any

from pgask.client import SearchResult


def citation_metadata(hit: SearchResult, pipeline: str | None) -> dict[str, Any]:
    """The metadata a framework document carries: the chunk's own metadata (the source row's
    metadata columns) overlaid with where it came from and how it ranked."""
    return {
        **(hit.metadata or {}),
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "source": hit.source,
        "pipeline": pipeline or "documents",
        "score": hit.score,
        "rank": hit.rank,
        "citation": f"[{hit.rank}] {hit.title} ({hit.source})" if hit.title
        else f"[{hit.rank}] {hit.source}",
    }
