"""A LlamaIndex retriever over rag.search (`pip install 'pgask[llamaindex]'`).

    from pgask.integrations.llamaindex import PgaskRetriever
    retriever = PgaskRetriever(dsn="postgresql://app@db/prod", k=4, pipeline="tickets",
                               filter={"team": "sre"})
    nodes = retriever.retrieve("disk full on the primary")
    nodes[0].score, nodes[0].node.metadata["citation"]

Use it anywhere LlamaIndex takes a retriever, e.g.
`RetrieverQueryEngine.from_args(retriever, llm=...)`.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from pgask.client import Client
from pgask.integrations import citation_metadata


class PgaskRetriever(BaseRetriever):
    """The k best chunks of a pgask pipeline as LlamaIndex nodes with their scores."""

    def __init__(self, dsn: str | None = None, *, client: Client | None = None, k: int = 5,
                 filter: dict[str, Any] | None = None, mode: str = "hybrid",
                 pipeline: str | None = None, options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client or Client(dsn)
        self._settings = {"k": k, "filter": filter, "mode": mode, "pipeline": pipeline,
                          "options": options}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._client.search(query_bundle.query_str, **self._settings)
        return [
            NodeWithScore(node=TextNode(id_=str(hit.chunk_id), text=hit.content,
                                        metadata=citation_metadata(hit,
                                                                   self._settings["pipeline"])),
                          score=hit.score)
            for hit in hits
        ]
