"""A plain Python client for applications that do not want SQL strings.

    from pgask import Client
    with Client("postgresql://app@db/prod") as pg:
        answer = pg.ask("How do I rotate the TLS certificates?", filter={"team": "sre"})
        print(answer.answer, [c.source for c in answer.citations])
        for hit in pg.search("certificate rotation", k=3):
            print(hit.rank, hit.title, hit.score)

Each read is one call of the SQL API (rag.answer, rag.search, rag.feedback) and returns
dataclasses; `add` and `delete` write the pipeline's source table (pgask.writes), whose
triggers embed the rows. Errors are the database's own (psycopg.Error subclasses carrying the
SQLSTATE and the message naming the bad argument), never re-worded here. A Client holds one
connection: use one per thread, or pass a connection from your pool. pgask.AsyncClient
(pgask.async_client) is the same API on psycopg's AsyncConnection; the statements and the
parsing of their results are here, once, for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgask import writes


@dataclass(frozen=True)
class Citation:
    """One numbered source of an answer: `[n]` in the answer text points here."""

    n: int
    chunk_id: int
    document_id: str
    title: str
    source: str
    span: tuple[int, int] | None  # characters of the document the answer drew on


@dataclass(frozen=True)
class Answer:
    answer: str
    mode: str  # generated | extractive | no_answer
    citations: list[Citation]
    grounded: bool
    answer_id: int | None  # the row of rag.answer_log; pass it to Client.feedback
    model: str | None = None
    llm: str | None = None
    note: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # rag.answer's whole JSON

    @property
    def answered(self) -> bool:
        return self.mode != "no_answer"


@dataclass(frozen=True)
class SearchResult:
    chunk_id: int
    document_id: str
    title: str
    source: str
    content: str
    metadata: dict[str, Any]
    score: float
    rank: int
    vector_rank: int | None = None
    keyword_rank: int | None = None
    vector_score: float | None = None
    keyword_score: float | None = None
    rerank_score: float | None = None

    @property
    def relevance(self) -> float:
        """How well the chunk matches the query, in [0, 1], whatever the mode, fusion or
        reranker (thresholds use it; `score` is the raw score that ordered the results):
        the larger of its cosine similarity with the query (vector_score, negative as 0) and
        its BM25 score saturated as bm25 / (bm25 + 1), over the lists that found it. It
        depends on the query and the chunk only, not on the other hits: a lone hit, or the
        last of k, keeps its value. (Computed here from rag.search's columns, so the SQL
        signature stays as it is.)"""
        signals = [0.0]
        if self.vector_score is not None:
            signals.append(min(1.0, max(0.0, self.vector_score)))
        if self.keyword_score is not None and self.keyword_score > 0:
            signals.append(self.keyword_score / (self.keyword_score + 1.0))
        return max(signals)


_SEARCH_COLUMNS = ("chunk_id", "document_id", "title", "source", "content", "metadata", "score",
                   "rank", "vector_rank", "keyword_rank", "vector_score", "keyword_score",
                   "rerank_score")


def _json(value: dict | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


ANSWER_SQL = ("SELECT rag.answer(%s, %s, filter => %s, pipeline => %s, model => %s,"
              " options => %s)")
SEARCH_SQL = (f"SELECT {', '.join(_SEARCH_COLUMNS)} FROM rag.search(%s, %s, filter => %s,"
              " mode => %s, pipeline => %s, options => %s)")
FEEDBACK_SQL = "SELECT rag.feedback(%s, %s, %s)"


def answer_params(question, k, filter, pipeline, model, options) -> tuple:
    return (question, k, _json(filter), pipeline, model, _json(options))


def search_params(query, k, filter, mode, pipeline, options) -> tuple:
    return (query, k, _json(filter), mode, pipeline, _json(options))


def answer_from_json(result: dict[str, Any]) -> Answer:
    citations = [
        Citation(n=c["n"], chunk_id=c["chunk_id"], document_id=c["document_id"],
                 title=c.get("title") or "", source=c.get("source") or "",
                 span=tuple(c["span"]) if c.get("span") else None)
        for c in result.get("citations") or []
    ]
    return Answer(answer=result["answer"], mode=result["mode"], citations=citations,
                  grounded=bool(result.get("grounded", True)),
                  answer_id=result.get("answer_id"), model=result.get("model"),
                  llm=result.get("llm"), note=result.get("note"),
                  usage=result.get("usage") or {}, timings_ms=result.get("timings_ms") or {},
                  raw=result)


def results_from_rows(rows: list[tuple]) -> list[SearchResult]:
    return [SearchResult(**dict(zip(_SEARCH_COLUMNS, row, strict=True))) for row in rows]


class Client:
    """pgask from Python: `Client(dsn).ask(question)` and `.search(query)`.

    dsn: a libpq connection string or URL; None uses $DATABASE_URL, else the project-local
    cluster (`pgask db start`). connection: an open psycopg connection to use instead (it must
    not be inside a transaction you mean to keep: each call runs on its own).
    """

    def __init__(self, dsn: str | None = None, *, connection: psycopg.Connection | None = None):
        if connection is not None and dsn is not None:
            raise ValueError("Client: pass a dsn or a connection, not both")
        self._dsn = dsn
        self._conn = connection
        self._owns = connection is None

    @property
    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            from pgask.localdb import database_url

            self._conn = psycopg.connect(self._dsn or database_url(), autocommit=True)
            self._owns = True
        return self._conn

    def close(self) -> None:
        if self._owns and self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ask(self, question: str, *, k: int = 5, filter: dict | None = None,
            pipeline: str | None = None, model: str | None = None,
            options: dict | None = None) -> Answer:
        """rag.answer: an answer with citations, or mode 'no_answer' ("I don't know")."""
        (result,) = self.connection.execute(
            ANSWER_SQL, answer_params(question, k, filter, pipeline, model, options)).fetchone()
        return answer_from_json(result)

    def search(self, query: str, *, k: int = 5, filter: dict | None = None,
               mode: str = "hybrid", pipeline: str | None = None,
               options: dict | None = None) -> list[SearchResult]:
        """rag.search: the k best chunks, best first."""
        rows = self.connection.execute(
            SEARCH_SQL, search_params(query, k, filter, mode, pipeline, options)).fetchall()
        return results_from_rows(rows)

    def feedback(self, answer_id: int, helpful: bool, comment: str | None = None) -> int:
        """rag.feedback: a user's verdict on an answer; returns the feedback's id."""
        (feedback_id,) = self.connection.execute(
            FEEDBACK_SQL, (answer_id, helpful, comment)).fetchone()
        return feedback_id

    def target(self, pipeline: str | None = None) -> writes.Target:
        """Where `add` writes a pipeline's texts (pgask.writes)."""
        if writes.is_documents(pipeline):
            return writes.DOCUMENTS_TARGET
        row = self.connection.execute(writes.TARGET_SQL, (pipeline,)).fetchone()
        return writes.target_from_row(pipeline, row)

    def add(self, texts: Sequence[str], *, metadatas: Sequence[dict] | None = None,
            ids: Sequence[str] | None = None, titles: Sequence[str | None] | None = None,
            pipeline: str | None = None) -> list[str]:
        """Writes texts into the pipeline's source table (an upsert per text, all in one
        transaction) and returns their ids; the pipeline's triggers chunk and embed them (at
        once in sync mode, else by the worker). See pgask.writes for the rows written."""
        target = self.target(pipeline)
        with self.connection.transaction():
            return [self.connection.execute(*writes.insert_statement(
                target, text, metadata, id, title)).fetchone()[0]
                for text, metadata, id, title in writes.batch(texts, metadatas, ids, titles)]

    def delete(self, ids: Sequence[str], *, pipeline: str | None = None) -> int:
        """Deletes the rows of these ids (as `add` returned them, or a hit's store id) from
        the pipeline's source table; returns how many were deleted."""
        target = self.target(pipeline)
        return self.connection.execute(*writes.delete_statement(target, ids)).rowcount
