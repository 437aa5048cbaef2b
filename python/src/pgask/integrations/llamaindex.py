"""LlamaIndex over pgask (`pip install 'pgask[llamaindex]'`): a vector store and a retriever.

    from llama_index.core import MockEmbedding, VectorStoreIndex
    from pgask.integrations.llamaindex import PgaskVectorStore
    store = PgaskVectorStore("postgresql://app@db/prod", pipeline="tickets")
    # The database embeds; LlamaIndex insists on an embed_model, whose vectors go unused.
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=1))
    nodes = index.as_retriever(similarity_top_k=2).retrieve("disk full on the primary")

    from pgask.integrations.llamaindex import PgaskRetriever
    retriever = PgaskRetriever("postgresql://app@db/prod", similarity_top_k=4, pipeline="tickets")
    nodes = await retriever.aretrieve("disk full on the primary")

Nodes come in rag.search's order; a node's score is SearchResult.relevance, in [0, 1] in every
mode (so SimilarityPostprocessor's cutoff means the same in each), the raw score is in
metadata["pgask"]["score"]. Node metadata is the chunk's own metadata plus pgask's
bookkeeping under "pgask", which is kept out of what the LLM and the embedder see; ref_doc_id
is the source row's id as the store's writes name it. Async methods await psycopg's
AsyncConnection: the event loop is not blocked by the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from pgask import writes
from pgask.async_client import AsyncClient
from pgask.client import Client, SearchResult
from pgask.integrations import PGASK_KEY, Connections, hit_metadata, user_metadata


def node_with_score(hit: SearchResult, pipeline: str | None) -> NodeWithScore:
    """A hit as a LlamaIndex node: its id the chunk's, its ref_doc_id the source row's."""
    node = TextNode(
        id_=str(hit.chunk_id), text=hit.content, metadata=hit_metadata(hit, pipeline),
        excluded_llm_metadata_keys=[PGASK_KEY], excluded_embed_metadata_keys=[PGASK_KEY],
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(
            node_id=writes.store_id(pipeline, hit.source, hit.document_id))})
    return NodeWithScore(node=node, score=hit.relevance)


class PgaskRetriever(BaseRetriever):
    """The k best chunks of a pgask pipeline as LlamaIndex nodes with their relevance.
    similarity_top_k is LlamaIndex's name for k (either may be given)."""

    def __init__(self, dsn: str | None = None, *, client: Client | None = None, k: int = 5,
                 similarity_top_k: int | None = None, filter: dict[str, Any] | None = None,
                 mode: str = "hybrid", pipeline: str | None = None,
                 options: dict[str, Any] | None = None,
                 async_client: AsyncClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client or Client(dsn)
        # Given a sync client only, async calls run it in a worker thread, off the loop.
        self._async_client = async_client or (AsyncClient(dsn) if client is None else None)
        self._settings = {"k": similarity_top_k or k, "filter": filter, "mode": mode,
                          "pipeline": pipeline, "options": options}

    def _nodes(self, hits: list[SearchResult]) -> list[NodeWithScore]:
        return [node_with_score(hit, self._settings["pipeline"]) for hit in hits]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(self._client.search(query_bundle.query_str, **self._settings))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._async_client is None:
            return await asyncio.to_thread(self._retrieve, query_bundle)
        return self._nodes(await self._async_client.search(query_bundle.query_str,
                                                           **self._settings))


_OPERATORS = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
              FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
              FilterOperator.IN: "$in", FilterOperator.NIN: "$nin"}


def filter_json(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex's MetadataFilters as rag.search's filter ({"team": {"$eq": "sre"}}, $and,
    $or); ValueError for what rag.search has no operator for (text_match, contains, any, all,
    is_empty, the condition NOT)."""
    if filters is None or not filters.filters:
        return None
    parts = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            parts.append(filter_json(item))
        elif item.operator in _OPERATORS:
            parts.append({item.key: {_OPERATORS[item.operator]: item.value}})
        else:
            raise ValueError(f"PgaskVectorStore: filter operator {item.operator.value!r} has "
                             f"no rag.search equivalent; use one of "
                             f"{', '.join(op.value for op in _OPERATORS)}")
    parts = [p for p in parts if p]
    if filters.condition not in (FilterCondition.AND, FilterCondition.OR, None):
        raise ValueError(f"PgaskVectorStore: filter condition {filters.condition.value!r} has "
                         "no rag.search equivalent (and, or)")
    if len(parts) == 1:
        return parts[0]
    return {"$or" if filters.condition == FilterCondition.OR else "$and": parts}


class PgaskVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one pgask pipeline; see pgask.integrations.Connections
    for `connection` (given a sync psycopg.Connection, the async methods run the sync ones in
    a worker thread, off the event loop). It stores text and embeds in the database: give it
    texts, not vectors (embeddings LlamaIndex computed are not used); queries need query_str."""

    stores_text: bool = True
    is_embedding_query: bool = False  # rag.search embeds the query itself
    flat_metadata: bool = False
    pipeline: str | None = None
    mode: str = "hybrid"
    options: dict[str, Any] | None = None
    _db: Connections = PrivateAttr()

    def __init__(self, connection: Any = None, *, pipeline: str | None = None,
                 mode: str = "hybrid", options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pipeline=pipeline, mode=mode, options=options, **kwargs)
        self._db = Connections(connection)

    @classmethod
    def class_name(cls) -> str:
        return "PgaskVectorStore"

    @property
    def client(self) -> Any:
        return self._db.sync or self._db.aio

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _rows(nodes: Sequence[BaseNode]) -> dict[str, Any]:
        """One source row per document: a document's nodes joined again (pgask chunks the row
        itself), keyed by ref_doc_id (a node without one is its own document)."""
        grouped: dict[str, list[BaseNode]] = {}
        for node in nodes:
            grouped.setdefault(node.ref_doc_id or node.node_id, []).append(node)
        return {"ids": list(grouped),
                "texts": ["\n\n".join(n.get_content(metadata_mode=MetadataMode.NONE)
                                      for n in group) for group in grouped.values()],
                "metadatas": [user_metadata(group[0].metadata) for group in grouped.values()]}

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Upserts one row per document into the pipeline's source table; the node ids."""
        rows = self._rows(nodes)
        self._db.client().add(rows.pop("texts"), pipeline=self.pipeline, **rows)
        return [node.node_id for node in nodes]

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        if self._db.aio is None:
            return await asyncio.to_thread(self.add, nodes, **kwargs)
        rows = self._rows(nodes)
        await self._db.aio.add(rows.pop("texts"), pipeline=self.pipeline, **rows)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Deletes the document's row from the source table; its chunks go with it."""
        self._db.client().delete([ref_doc_id], pipeline=self.pipeline)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        if self._db.aio is None:
            return await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)
        await self._db.aio.delete([ref_doc_id], pipeline=self.pipeline)

    # -- querying ----------------------------------------------------------------------------

    def _search_args(self, query: VectorStoreQuery) -> dict[str, Any]:
        if not query.query_str:
            raise ValueError("PgaskVectorStore: a query needs its text (query_str): the "
                             "database embeds it with the pipeline's embedder")
        if query.doc_ids or query.node_ids:
            raise ValueError("PgaskVectorStore: doc_ids and node_ids are not supported; "
                             "filter on metadata instead")
        mode, options = self.mode, dict(self.options or {})
        if query.mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE):
            mode = "keyword"
        elif query.mode in (VectorStoreQueryMode.HYBRID, VectorStoreQueryMode.SEMANTIC_HYBRID):
            mode = "hybrid"
        elif query.mode == VectorStoreQueryMode.MMR:
            options["mmr_lambda"] = 0.5 if query.mmr_threshold is None else query.mmr_threshold
        elif query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValueError(f"PgaskVectorStore: query mode {query.mode.value!r} is not "
                             "supported (default, hybrid, text_search, sparse, mmr)")
        return {"k": query.similarity_top_k, "filter": filter_json(query.filters),
                "mode": mode, "pipeline": self.pipeline, "options": options or None}

    def _result(self, hits: list[SearchResult]) -> VectorStoreQueryResult:
        scored = [node_with_score(hit, self.pipeline) for hit in hits]
        return VectorStoreQueryResult(nodes=[s.node for s in scored],
                                      similarities=[s.score for s in scored],
                                      ids=[s.node.node_id for s in scored])

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """rag.search's similarity_top_k best chunks, their similarities the relevances."""
        return self._result(self._db.client().search(query.query_str or "",
                                                     **self._search_args(query)))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if self._db.aio is None:
            return await asyncio.to_thread(self.query, query, **kwargs)
        return self._result(await self._db.aio.search(query.query_str or "",
                                                      **self._search_args(query)))
