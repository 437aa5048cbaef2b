"""pgask.Client for asyncio: the same methods, awaited, on psycopg's AsyncConnection, so a
search or an answer does not hold the event loop while the database works.

    from pgask import AsyncClient
    async with AsyncClient("postgresql://app@db/prod") as pg:
        hits = await pg.search("certificate rotation", k=3)
        ids = await pg.add(["Rotate the certificates every 90 days."], ids=["tls.md"])

The statements and the parsing of their results are pgask.client's and pgask.writes';
only the awaiting is here.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from pgask import writes
from pgask.client import (
    ANSWER_SQL,
    FEEDBACK_SQL,
    SEARCH_SQL,
    Answer,
    SearchResult,
    answer_from_json,
    answer_params,
    results_from_rows,
    search_params,
)


class AsyncClient:
    """pgask from asyncio: `await AsyncClient(dsn).search(query)`; see pgask.Client.

    dsn: a libpq connection string or URL; None uses $DATABASE_URL, else the project-local
    cluster. connection: an open psycopg.AsyncConnection to use instead (not closed here).
    """

    def __init__(self, dsn: str | None = None, *,
                 connection: psycopg.AsyncConnection | None = None):
        if connection is not None and dsn is not None:
            raise ValueError("AsyncClient: pass a dsn or a connection, not both")
        self._dsn = dsn
        self._conn = connection
        self._owns = connection is None

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            from pgask.localdb import database_url

            self._conn = await psycopg.AsyncConnection.connect(self._dsn or database_url(),
                                                               autocommit=True)
            self._owns = True
        return self._conn

    async def close(self) -> None:
        if self._owns and self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _one(self, statement, params) -> tuple:
        cursor = await (await self.connection()).execute(statement, params)
        return await cursor.fetchone()

    async def ask(self, question: str, *, k: int = 5, filter: dict | None = None,
                  pipeline: str | None = None, model: str | None = None,
                  options: dict | None = None) -> Answer:
        """rag.answer, awaited (see Client.ask)."""
        (result,) = await self._one(ANSWER_SQL, answer_params(question, k, filter, pipeline,
                                                              model, options))
        return answer_from_json(result)

    async def search(self, query: str, *, k: int = 5, filter: dict | None = None,
                     mode: str = "hybrid", pipeline: str | None = None,
                     options: dict | None = None) -> list[SearchResult]:
        """rag.search, awaited (see Client.search)."""
        cursor = await (await self.connection()).execute(
            SEARCH_SQL, search_params(query, k, filter, mode, pipeline, options))
        return results_from_rows(await cursor.fetchall())

    async def feedback(self, answer_id: int, helpful: bool, comment: str | None = None) -> int:
        (feedback_id,) = await self._one(FEEDBACK_SQL, (answer_id, helpful, comment))
        return feedback_id

    async def target(self, pipeline: str | None = None) -> writes.Target:
        if writes.is_documents(pipeline):
            return writes.DOCUMENTS_TARGET
        return writes.target_from_row(pipeline, await self._one(writes.TARGET_SQL, (pipeline,)))

    async def add(self, texts: Sequence[str], *, metadatas: Sequence[dict] | None = None,
                  ids: Sequence[str] | None = None, titles: Sequence[str | None] | None = None,
                  pipeline: str | None = None) -> list[str]:
        """Client.add, awaited: one transaction, the ids of the rows written."""
        target = await self.target(pipeline)
        conn = await self.connection()
        added = []
        async with conn.transaction():
            for text, metadata, id, title in writes.batch(texts, metadatas, ids, titles):
                cursor = await conn.execute(*writes.insert_statement(target, text, metadata,
                                                                     id, title))
                added.append((await cursor.fetchone())[0])
        return added

    async def delete(self, ids: Sequence[str], *, pipeline: str | None = None) -> int:
        """Client.delete, awaited: how many rows were deleted."""
        target = await self.target(pipeline)
        cursor = await (await self.connection()).execute(*writes.delete_statement(target, ids))
        return cursor.rowcount
