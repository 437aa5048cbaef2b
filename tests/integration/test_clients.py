"""The Python client and the LangChain and LlamaIndex retrievers, against a real database and
the real libraries (the dev extra installs them)."""

from __future__ import annotations

import psycopg
import pytest

from pgask import Client
from pgask.client import Answer, SearchResult


@pytest.fixture
def tickets(db):
    db.execute("CREATE TABLE tickets (id int PRIMARY KEY, subject text, body text, team text)")
    db.execute("INSERT INTO tickets VALUES"
               " (1, 'Disk full', 'The primary ran out of disk because WAL archives piled up.',"
               "  'sre'),"
               " (2, 'Disk alert on the replica', 'The replica disk filled with old logs.', 'db'),"
               " (3, 'Slow dashboard', 'The sales dashboard takes a minute to load.', 'bi')")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', title => 'subject',"
               " metadata => ARRAY['team'])")
    db.execute("CALL rag.process_queue()")
    return db


def test_client_search_returns_dataclasses_with_filter_mode_and_pipeline(tickets, db_url):
    with Client(db_url) as pg:
        hits = pg.search("disk filled up", k=3, pipeline="tickets")
        assert [type(h) for h in hits] == [SearchResult] * 3
        assert [h.rank for h in hits] == [1, 2, 3]
        assert {h.document_id for h in hits[:2]} == {"1", "2"}
        assert hits[0].metadata["team"] in {"sre", "db"} and hits[0].source

        filtered = pg.search("disk filled up", k=3, pipeline="tickets", filter={"team": "db"})
        assert [(h.document_id, h.metadata["team"]) for h in filtered] == [("2", "db")]

        keyword = pg.search("dashboard", k=3, pipeline="tickets", mode="keyword")
        assert [h.document_id for h in keyword] == ["3"]
        assert keyword[0].vector_rank is None and keyword[0].keyword_rank == 1


def test_client_ask_returns_an_answer_with_citations_and_takes_feedback(tickets, db_url):
    with Client(db_url) as pg:
        answer = pg.ask("Why did the primary run out of disk?", pipeline="tickets",
                        model="extractive")
        assert isinstance(answer, Answer) and answer.answered and answer.mode == "extractive"
        assert "WAL archives" in answer.answer
        assert answer.citations[0].n == 1 and answer.citations[0].document_id == "1"
        assert answer.citations[0].span is not None
        assert pg.feedback(answer.answer_id, True, "right") > 0
        unknown = pg.ask("Who won the 1998 world cup?", pipeline="tickets")
        assert unknown.mode == "no_answer" and not unknown.answered and unknown.citations == []
    assert tickets.execute("SELECT helpful FROM rag.answer_feedback").fetchall() == [(True,)]


def test_client_passes_the_databases_errors_through(tickets, db_url):
    with Client(db_url) as pg, pytest.raises(psycopg.errors.InvalidParameterValue,
                                             match="k must be"):
        pg.search("disk", k=0)


def test_client_uses_a_given_connection(tickets):
    pg = Client(connection=tickets)
    assert pg.search("dashboard", k=1, pipeline="tickets")[0].document_id == "3"
    pg.close()
    assert not tickets.closed  # not ours to close


def test_langchain_retriever(tickets, db_url):
    pytest.importorskip("langchain_core", reason="pip install 'pgask[langchain]'")
    from langchain_core.documents import Document

    from pgask.integrations.langchain import PgaskRetriever

    retriever = PgaskRetriever(dsn=db_url, k=2, pipeline="tickets", filter={"team": "db"})
    docs = retriever.invoke("disk filled up")
    assert [type(d) for d in docs] == [Document]
    assert docs[0].page_content == "The replica disk filled with old logs."
    assert docs[0].id == str(docs[0].metadata["chunk_id"])
    assert docs[0].metadata | {"score": None} == {
        "team": "db", "chunk_id": docs[0].metadata["chunk_id"], "document_id": "2",
        "title": "Disk alert on the replica", "source": "tickets:2", "pipeline": "tickets",
        "score": None, "rank": 1,
        "citation": "[1] Disk alert on the replica (tickets:2)"}
    # Per-call settings override the retriever's: no filter, keyword mode.
    docs = retriever.invoke("dashboard", filter=None, mode="keyword", k=1)
    assert [d.metadata["document_id"] for d in docs] == ["3"]


def test_llamaindex_retriever(tickets, db_url):
    pytest.importorskip("llama_index.core", reason="pip install 'pgask[llamaindex]'")
    from llama_index.core.schema import NodeWithScore

    from pgask.integrations.llamaindex import PgaskRetriever

    retriever = PgaskRetriever(db_url, k=3, pipeline="tickets", mode="hybrid",
                               filter={"team": {"$in": ["sre", "db"]}})
    nodes = retriever.retrieve("disk filled up")
    assert [type(n) for n in nodes] == [NodeWithScore, NodeWithScore]
    assert {n.node.metadata["document_id"] for n in nodes} == {"1", "2"}
    # rag.search's fused score (z-scores by default: zero or negative is possible).
    assert all(isinstance(n.score, float) for n in nodes)
    assert nodes[0].score >= nodes[1].score
    assert nodes[0].node.metadata["citation"].startswith("[1] Disk")
    assert nodes[0].node.node_id == str(nodes[0].node.metadata["chunk_id"])
