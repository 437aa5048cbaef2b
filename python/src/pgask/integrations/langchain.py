"""A LangChain retriever over rag.search (`pip install 'pgask[langchain]'`).

    from pgask.integrations.langchain import PgaskRetriever
    retriever = PgaskRetriever(dsn="postgresql://app@db/prod", k=4, pipeline="tickets",
                               filter={"team": "sre"}, mode="hybrid")
    docs = retriever.invoke("disk full on the primary")
    docs[0].metadata["citation"]   # "[1] Disk full (runbooks/disk-full.md)"

k, filter, mode, pipeline and options can also be given per call:
`retriever.invoke(query, k=2, filter={...})`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from pgask.client import Client
from pgask.integrations import citation_metadata


class PgaskRetriever(BaseRetriever):
    """The k best chunks of a pgask pipeline as LangChain Documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dsn: str | None = None
    client: Client | None = Field(default=None, exclude=True)
    k: int = 5
    filter: dict[str, Any] | None = None
    mode: str = "hybrid"
    pipeline: str | None = None
    options: dict[str, Any] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **overrides: Any) -> list[Document]:
        if self.client is None:
            self.client = Client(self.dsn)
        settings = {"k": self.k, "filter": self.filter, "mode": self.mode,
                    "pipeline": self.pipeline, "options": self.options, **overrides}
        hits = self.client.search(query, **settings)
        return [Document(page_content=hit.content, id=str(hit.chunk_id),
                         metadata=citation_metadata(hit, settings["pipeline"]))
                for hit in hits]
