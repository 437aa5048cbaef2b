"""Retrievers and vector stores for the frameworks users already have, over rag.search and
the pipeline's source table.

Each module imports its framework at import time and is installed with an extra:
`pip install 'pgask[langchain]'` (pgask.integrations.langchain) or
`pip install 'pgask[llamaindex]'` (pgask.integrations.llamaindex). Both return the chunks of
rag.search with the chunk's own metadata, and pgask's bookkeeping (citation, scores, ids)
under the one key PGASK_KEY, so that neither overwrites the other.
"""

from __future__ import annotations

from typing import Any

from pgask.client import SearchResult

# The metadata key of pgask's bookkeeping. Under one key, not beside the user's fields: a
# source table's own column named score, source, title or rank was overwritten by pgask's
# values when they shared the top level, and one key is one name for LlamaIndex to keep out of
# the LLM's prompt (excluded_llm_metadata_keys).
PGASK_KEY = "pgask"


def pgask_fields(hit: SearchResult, pipeline: str | None) -> dict[str, Any]:
    """Where a hit came from and how it ranked: the value of metadata[PGASK_KEY]."""
    return {
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "source": hit.source,
        "pipeline": pipeline or "documents",
        "score": hit.score,
        "relevance": hit.relevance,
        "rank": hit.rank,
        "citation": f"[{hit.rank}] {hit.title} ({hit.source})" if hit.title
        else f"[{hit.rank}] {hit.source}",
    }


def hit_metadata(hit: SearchResult, pipeline: str | None) -> dict[str, Any]:
    """The metadata a framework document carries: the chunk's own metadata (the source row's
    metadata columns) as it is, and pgask's fields under PGASK_KEY."""
    return {**(hit.metadata or {}), PGASK_KEY: pgask_fields(hit, pipeline)}


def user_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A document's metadata to write back: without pgask's bookkeeping, which a search adds
    (a document read from one store and added to another keeps only its own fields)."""
    return {key: value for key, value in (metadata or {}).items() if key != PGASK_KEY}


class Connections:
    """The clients a vector store runs on, from its `connection` argument: a DSN (or None,
    $DATABASE_URL) opens a connection for sync calls and an AsyncConnection for async ones,
    each when first needed; a psycopg Connection serves the sync calls (async ones then run
    them in a worker thread, off the event loop); an AsyncConnection serves the async calls
    only (a sync call fails: it would have to block the loop that connection belongs to)."""

    def __init__(self, connection: Any = None):
        import psycopg

        from pgask.async_client import AsyncClient
        from pgask.client import Client

        self.sync: Client | None = None
        self.aio: AsyncClient | None = None
        if connection is None or isinstance(connection, str):
            self.sync, self.aio = Client(connection), AsyncClient(connection)
        elif isinstance(connection, psycopg.AsyncConnection):
            self.aio = AsyncClient(connection=connection)
        elif isinstance(connection, psycopg.Connection):
            self.sync = Client(connection=connection)
        else:
            raise TypeError("connection must be a DSN string, a psycopg.Connection or a "
                            f"psycopg.AsyncConnection, got {type(connection).__name__}")

    def client(self):
        if self.sync is None:
            raise TypeError("this store was given a psycopg.AsyncConnection: use the async "
                            "methods (ainvoke, asimilarity_search, aquery, ...), or pass a DSN")
        return self.sync

    def close(self) -> None:
        if self.sync is not None:
            self.sync.close()

    async def aclose(self) -> None:
        if self.aio is not None:
            await self.aio.close()
