"""LangChain over pgask (`pip install 'pgask[langchain]'`): a VectorStore and a retriever.

    from pgask.integrations.langchain import PgaskVectorStore
    store = PgaskVectorStore("postgresql://app@db/prod", pipeline="tickets")
    store.add_texts(["The primary ran out of disk."], metadatas=[{"team": "sre"}], ids=["9"])
    store.similarity_search_with_score("disk full", k=2, filter={"team": "sre"})
    retriever = store.as_retriever(search_kwargs={"k": 2})   # invoke / ainvoke

    from pgask.integrations.langchain import PgaskRetriever
    retriever = PgaskRetriever(dsn="postgresql://app@db/prod", k=4, pipeline="tickets")
    docs = retriever.invoke("disk full on the primary", k=2, filter={"team": "sre"})

Searches are rag.search (the database embeds the query with the pipeline's embedder: the
store takes no Embeddings); writes go into the pipeline's source table (pgask.writes), whose
triggers embed them. Scores are `SearchResult.relevance`, in [0, 1] whatever the mode, so
score thresholds work; the raw score is in metadata["pgask"]["score"]. Async methods await
psycopg's AsyncConnection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field

from pgask import writes
from pgask.async_client import AsyncClient
from pgask.client import Client, SearchResult
from pgask.integrations import Connections, hit_metadata, user_metadata

_SEARCH_SETTINGS = ("k", "filter", "mode", "pipeline", "options")


class PgaskRetriever(BaseRetriever):
    """The k best chunks of a pgask pipeline as LangChain Documents (id: the chunk's id).
    k, filter, mode, pipeline and options can be given per call, sync or async, or in
    search_kwargs as LangChain's own retrievers take them; an unknown argument is an error
    (pydantic ignored it, so search_kwargs={"k": 2} silently left k at 5)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    dsn: str | None = None
    client: Client | None = Field(default=None, exclude=True)
    async_client: AsyncClient | None = Field(default=None, exclude=True)
    k: int = 5
    filter: dict[str, Any] | None = None
    mode: str = "hybrid"
    pipeline: str | None = None
    options: dict[str, Any] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        given = {**self.search_kwargs, **overrides}
        unknown = set(given) - set(_SEARCH_SETTINGS)
        if unknown:
            raise TypeError(f"PgaskRetriever: unknown setting(s) {sorted(unknown)}; "
                            f"it takes {', '.join(_SEARCH_SETTINGS)}")
        return {"k": self.k, "filter": self.filter, "mode": self.mode,
                "pipeline": self.pipeline, "options": self.options, **given}

    def _documents(self, hits: list[SearchResult], pipeline: str | None) -> list[Document]:
        return [Document(page_content=hit.content, id=str(hit.chunk_id),
                         metadata=hit_metadata(hit, pipeline)) for hit in hits]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **overrides: Any) -> list[Document]:
        if self.client is None:
            self.client = Client(self.dsn)
        settings = self._settings(overrides)
        return self._documents(self.client.search(query, **settings), settings["pipeline"])

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **overrides: Any) -> list[Document]:
        settings = self._settings(overrides)
        if self.async_client is None and self.client is not None:
            # Given a sync client only (its connection, say): run it off the event loop.
            hits = await run_in_executor(None, self.client.search, query, **settings)
            return self._documents(hits, settings["pipeline"])
        if self.async_client is None:
            self.async_client = AsyncClient(self.dsn)
        hits = await self.async_client.search(query, **settings)
        return self._documents(hits, settings["pipeline"])


class PgaskVectorStore(VectorStore):
    """A LangChain VectorStore over one pgask pipeline.

    connection: a DSN (None: $DATABASE_URL), a psycopg.Connection or a
    psycopg.AsyncConnection (see pgask.integrations.Connections). pipeline: the pipeline
    (None: `documents`, or the only one). mode and options: rag.search's, for every search
    (a call's `mode=` / `options=` override them). Document ids are the source rows' keys
    (rag.documents: its `source`), as `add_texts` returns them and `delete` takes them.
    """

    def __init__(self, connection: Any = None, *, pipeline: str | None = None,
                 mode: str = "hybrid", options: dict[str, Any] | None = None) -> None:
        self._db = Connections(connection)
        self.pipeline, self.mode, self.options = pipeline, mode, options

    @property
    def embeddings(self) -> Embeddings | None:
        return None  # the pipeline's embedder, inside the database, embeds texts and queries

    def _select_relevance_score_fn(self):
        return lambda relevance: relevance  # the scores already are relevances in [0, 1]

    # -- searching ---------------------------------------------------------------------------

    def _search_args(self, k: int, filter: dict | None, kwargs: dict[str, Any],
                     mmr: dict[str, Any] | None = None) -> dict[str, Any]:
        mode = kwargs.pop("mode", self.mode)
        options = {**(self.options or {}), **(kwargs.pop("options", None) or {}), **(mmr or {})}
        kwargs.pop("score_threshold", None)  # applied by LangChain, over the relevances
        if kwargs:
            raise TypeError(f"PgaskVectorStore: unknown search argument(s) {sorted(kwargs)}; "
                            "it takes k, filter, mode and options")
        return {"k": k, "filter": filter, "mode": mode, "pipeline": self.pipeline,
                "options": options or None}

    def _scored(self, hits: list[SearchResult]) -> list[tuple[Document, float]]:
        return [(Document(page_content=hit.content,
                          id=writes.store_id(self.pipeline, hit.source, hit.document_id),
                          metadata=hit_metadata(hit, self.pipeline)), hit.relevance)
                for hit in hits]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """(Document, relevance in [0, 1]) best first: rag.search's k best chunks."""
        hits = self._db.client().search(query, **self._search_args(k, filter, kwargs))
        return self._scored(hits)

    async def asimilarity_search_with_score(self, query: str, k: int = 4,
                                            filter: dict | None = None, **kwargs: Any
                                            ) -> list[tuple[Document, float]]:
        if self._db.aio is None:
            return await run_in_executor(None, self.similarity_search_with_score, query, k,
                                         filter, **kwargs)
        hits = await self._db.aio.search(query, **self._search_args(k, filter, kwargs))
        return self._scored(hits)

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None,
                          **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, filter: dict | None = None,
                                 **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter,
                                                                           **kwargs)]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any
                                                 ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score(query, k, **kwargs)

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                        **kwargs: Any
                                                        ) -> list[tuple[Document, float]]:
        return await self.asimilarity_search_with_score(query, k, **kwargs)

    @staticmethod
    def _mmr(k: int, fetch_k: int, lambda_mult: float) -> dict[str, Any]:
        """rag.search's own MMR (option mmr_lambda, over the chunks' embeddings inside the
        database, so no vector leaves it): fetch_k candidates per list, as a multiple of k."""
        return {"mmr_lambda": lambda_mult,
                "candidates_factor": max(1, min(100, math.ceil(fetch_k / max(k, 1))))}

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, filter: dict | None = None,
                                      **kwargs: Any) -> list[Document]:
        return self._mmr_search(query, k, fetch_k, lambda_mult, filter, kwargs)

    def _mmr_search(self, query, k, fetch_k, lambda_mult, filter, kwargs) -> list[Document]:
        args = self._search_args(k, filter, kwargs, self._mmr(k, fetch_k, lambda_mult))
        return [doc for doc, _ in self._scored(self._db.client().search(query, **args))]

    async def amax_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                             lambda_mult: float = 0.5,
                                             filter: dict | None = None, **kwargs: Any
                                             ) -> list[Document]:
        if self._db.aio is None:
            return await run_in_executor(None, self._mmr_search, query, k, fetch_k,
                                         lambda_mult, filter, kwargs)
        args = self._search_args(k, filter, kwargs, self._mmr(k, fetch_k, lambda_mult))
        hits = await self._db.aio.search(query, **args)
        return [doc for doc, _ in self._scored(hits)]

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _write_args(texts: Iterable[str], metadatas: list[dict] | None, ids: list | None,
                    kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs:
            raise TypeError(f"PgaskVectorStore: unknown argument(s) {sorted(kwargs)}")
        return {"texts": list(texts), "ids": ids,
                "metadatas": [user_metadata(m) for m in metadatas] if metadatas else None}

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Upserts the texts into the pipeline's source table; their ids (pgask.writes)."""
        args = self._write_args(texts, metadatas, ids, kwargs)
        return self._db.client().add(args.pop("texts"), pipeline=self.pipeline, **args)

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        if self._db.aio is None:
            return await run_in_executor(None, self.add_texts, texts, metadatas, ids=ids,
                                         **kwargs)
        args = self._write_args(texts, metadatas, ids, kwargs)
        return await self._db.aio.add(args.pop("texts"), pipeline=self.pipeline, **args)

    @staticmethod
    def _delete_ids(ids: list[str] | None, kwargs: dict[str, Any]) -> list[str]:
        if ids is None or kwargs:
            raise ValueError("PgaskVectorStore.delete takes the ids to delete (deleting every "
                             "row of a source table is for SQL: TRUNCATE or DELETE)")
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Deletes the rows of these ids from the source table (their chunks go with them);
        True, as LangChain's contract asks, also for ids that were not there."""
        self._db.client().delete(self._delete_ids(ids, kwargs), pipeline=self.pipeline)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        if self._db.aio is None:
            return await run_in_executor(None, self.delete, ids, **kwargs)
        await self._db.aio.delete(self._delete_ids(ids, kwargs), pipeline=self.pipeline)
        return True

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                   connection: Any = None, pipeline: str | None = None, **kwargs: Any
                   ) -> PgaskVectorStore:
        """A store over `pipeline` with the texts added. `embedding` is not used: the
        pipeline's embedder embeds (LangChain's signature has it)."""
        store = cls(connection, pipeline=pipeline, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                          metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                          connection: Any = None, pipeline: str | None = None, **kwargs: Any
                          ) -> PgaskVectorStore:
        store = cls(connection, pipeline=pipeline, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store
