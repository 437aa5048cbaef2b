"""Degrade, don't fail, when the embedding provider is down (issue 33).

The loopback provider (tests/openai_server.py) is told to fail: connection refused (nothing
listens on the embedder's port), slower than the query timeout, HTTP 503, HTTP 429 with a
Retry-After beyond the query's budget, and a missing API key. For each, over hybrid search,
vector search and rag.answer: hybrid returns the BM25 ranking and says so (NOTICE), vector
fails with 38000 naming the embedder and keyword mode, and an answer comes from keyword
search with `degraded` in its JSON, its note, rag.answer_log.degraded and
rag.pipeline_status. Then: the option on_embedder_error 'error' (per call, per pipeline), the
circuit breaker (counted on the loopback server's requests, never timed) and its recovery
after the cool-down on the same connection, and a failing reranker in an answer.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from fix_openai import EmbeddingServer, free_port, server_process

ROWS = {
    1: "When the disk of db1 is full, delete old WAL archives first, then grow the volume.",
    2: "Replication lag on db2 grows when the standby replays a long vacuum of a big table.",
    3: "A slow query on the orders table needs an index on customer_id and created_at.",
    4: "Backups run at midnight and are kept for thirty days in the archive bucket.",
}
QUERY = "the disk of db1 is full"
QUESTION = "What should I do when the disk of db1 is full?"


def build(db, url: str) -> None:
    """Embedder 'qsrv' at `url`, table tickets and pipeline 'tickets', every row embedded;
    the query settings small, so a failing provider costs the tests little time."""
    db.execute("SELECT rag.create_embedder('qsrv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (url,))
    db.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)")
    db.cursor().executemany("INSERT INTO tickets VALUES (%s, %s)", list(ROWS.items()))
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', embedder => 'qsrv')")
    db.execute("CALL rag.process_queue('tickets')")
    assert db.execute("SELECT count(*) FROM rag.tickets_chunks").fetchone()[0] == len(ROWS)
    set_settings(db, query_embed_timeout_ms=300, query_embed_budget_ms=1500)


def set_settings(db, **values) -> None:
    for key, value in values.items():
        db.execute("UPDATE rag.settings SET value = %s WHERE key = %s", (str(value), key))


@dataclass
class Notice:
    severity: str
    message_primary: str
    message_hint: str


@contextmanager
def notices(db):
    """The NOTICE and WARNING messages the block's statements raise."""
    seen: list[Notice] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:  # read now: it is freed after
        seen.append(Notice(diag.severity_nonlocalized, diag.message_primary or "",
                           diag.message_hint or ""))

    db.add_notice_handler(keep)
    try:
        yield seen
    finally:
        db.remove_notice_handler(keep)


def search(db, query=QUERY, mode="hybrid", options=None):
    return db.execute(
        "SELECT chunk_id, score, vector_rank, keyword_rank FROM rag.search(%s, 3, mode => %s,"
        " pipeline => 'tickets', options => %s)",
        (query, mode, None if options is None else json.dumps(options))).fetchall()


def answer(db, question=QUESTION, options=None, model="extractive"):
    return db.execute("SELECT rag.answer(%s, pipeline => 'tickets', model => %s, options => %s)",
                      (question, model, None if options is None else json.dumps(options))
                      ).fetchone()[0]


def status(db) -> dict:
    cur = db.execute("SELECT * FROM rag.pipeline_status WHERE pipeline = 'tickets'")
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


# kind -> (what the failure says)
KINDS = {
    "connection refused": "cannot connect",
    "timeout": "query_embed_timeout_ms",
    "http 503": "HTTP 503",
    "http 429 with a long Retry-After": "HTTP 429",
    "missing key": "no API key",
}


@pytest.fixture
def failing(request, db, embedding_server):
    """The pipeline built while the provider works, then the provider failing as the kind
    says; yields what the failure's message holds."""
    kind = request.param
    if kind == "connection refused":
        port = free_port()
        with server_process("openai_server.py", "embeddings", port=port):
            build(db, f"http://127.0.0.1:{port}/v1")
        # The server is gone: nothing listens on the port any more.
    else:
        build(db, embedding_server.url)
        if kind == "timeout":
            embedding_server.fail_next({"delay": 1, "times": 1000})
        elif kind == "http 503":
            embedding_server.fail_next({"status": 503, "times": 1000})
        elif kind == "http 429 with a long Retry-After":
            embedding_server.fail_next({"status": 429, "retry_after": 60, "times": 1000})
        elif kind == "missing key":
            # The operator points the embedder at a key variable the server does not have
            # (rag.create_embedder refuses to change a pinned embedder; the row can be).
            db.execute("UPDATE rag.embedders SET api_key_env = 'PGASK_DEGRADE_UNSET_KEY'"
                       " WHERE name = 'qsrv'")
    yield KINDS[kind]
    embedding_server.fail_next()


def assert_clean(exc: psycopg.Error) -> None:
    for text in (exc.diag.message_primary, exc.diag.message_detail, exc.diag.message_hint,
                 exc.diag.context):
        assert "Traceback" not in (text or "")


MATRIX = pytest.mark.parametrize("failing", list(KINDS), ids=list(KINDS), indirect=True)


@MATRIX
def test_hybrid_search_degrades_to_keyword_and_says_so(db, failing):
    keyword = search(db, mode="keyword")
    assert keyword and keyword[0][3] == 1
    with notices(db) as seen:
        hybrid = search(db)
    assert hybrid == keyword  # the BM25 ranking: same chunks, order and scores
    assert all(r[2] is None for r in hybrid)
    said = [n for n in seen if "searched by keyword only" in n.message_primary]
    assert len(said) == 1 and said[0].severity == "NOTICE"
    assert "embedder qsrv" in said[0].message_primary and failing in said[0].message_primary
    assert "on_embedder_error" in said[0].message_hint


@MATRIX
def test_vector_search_fails_cleanly_naming_the_embedder_and_keyword_mode(db, failing):
    with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
        search(db, mode="vector")
    message = caught.value.diag.message_primary
    assert message.startswith("rag.search: embedder qsrv") and failing in message, message
    assert "mode => 'keyword'" in caught.value.diag.message_hint
    assert_clean(caught.value)


@MATRIX
def test_answers_come_from_keyword_search_and_say_so(db, failing):
    result = answer(db)
    assert failing in result["degraded"] and "embedder qsrv" in result["degraded"]
    assert result["note"].startswith("This answer comes from keyword search (BM25) only")
    assert result["retrieved"][0]["chunk_id"] == search(db, mode="keyword")[0][0]
    assert result["mode"] == "extractive", result
    assert result["citations"][0]["document_id"] == "1"
    logged = db.execute("SELECT degraded FROM rag.answer_log WHERE id = %s",
                        (result["answer_id"],)).fetchone()[0]
    assert logged == result["degraded"]
    row = status(db)
    assert row["degraded_answers_1h"] == 1 and row["last_degraded"] == result["degraded"]
    assert row["last_degraded_at"] is not None


def test_option_error_makes_hybrid_and_answers_fail_per_call_and_per_pipeline(
        db, embedding_server):
    build(db, embedding_server.url)
    embedding_server.fail_next({"status": 503, "times": 1000})
    with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
        search(db, options={"on_embedder_error": "error"})
    assert "HTTP 503" in caught.value.diag.message_primary
    assert "on_embedder_error" in caught.value.diag.message_hint
    assert_clean(caught.value)
    with pytest.raises(psycopg.errors.ExternalRoutineException) as caught:
        answer(db, options={"search": {"on_embedder_error": "error"}})
    assert caught.value.diag.message_primary.startswith("rag.answer: embedder qsrv")
    assert_clean(caught.value)
    db.execute("SELECT rag.alter_pipeline('tickets',"
               " search_options => '{\"on_embedder_error\": \"error\"}')")
    for call in (lambda: search(db), lambda: answer(db)):
        with pytest.raises(psycopg.errors.ExternalRoutineException):
            call()
    # The call's option wins over the pipeline's.
    assert search(db, options={"on_embedder_error": "degrade"}) == search(db, mode="keyword")
    assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="on_embedder_error"):
        search(db, options={"on_embedder_error": "ignore"})
    # In rag.answer it is a search option, as every rag.search option is.
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=re.escape('on_embedder_error is a rag.search option: give it'
                                       ' as {"search": {"on_embedder_error": ...}}')):
        answer(db, options={"on_embedder_error": "error"})


def test_the_breaker_skips_the_failing_provider_then_probes_it_after_the_cool_down(
        db, embedding_server: EmbeddingServer):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=3, query_breaker_cooldown_seconds=1)
    embedding_server.reset()
    embedding_server.fail_next({"status": 503, "times": 3})
    # The first query retries within its budget until the third failure opens the breaker.
    assert search(db) == search(db, mode="keyword")
    assert embedding_server.requests() == 3
    # Open: the next queries (the same text or another, searches and answers) ask nothing.
    with notices(db) as seen:
        for query in (QUERY, "replication lag on db2", "backups at midnight"):
            search(db, query=query)
    assert "not asked again" in answer(db)["degraded"]
    assert embedding_server.requests() == 3
    said = [n.message_primary for n in seen if "keyword only" in n.message_primary]
    assert len(said) == 3 and all("not asked again" in m for m in said), said
    # After the cool-down (the faults are spent: the provider is back), one probe closes
    # it on the same connection: hybrid again, no reconnect.
    time.sleep(1.2)
    with notices(db) as seen:
        rows = search(db)
    assert not [n for n in seen if "keyword only" in n.message_primary]
    assert rows[0][2] is not None  # a vector rank: hybrid again
    assert embedding_server.requests() == 4
    assert answer(db)["degraded"] is None


def test_a_failed_probe_opens_the_breaker_again(db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=2, query_breaker_cooldown_seconds=1)
    embedding_server.reset()
    embedding_server.fail_next({"status": 503, "times": 1000})
    search(db)
    assert embedding_server.requests() == 2
    time.sleep(1.2)
    search(db, query="another query")  # the probe: one request, it fails
    search(db, query="a third query")  # open again: none
    assert embedding_server.requests() == 3


def test_the_provider_coming_back_on_its_port_is_used_without_reconnecting(db):
    port = free_port()
    with server_process("openai_server.py", "embeddings", port=port):
        build(db, f"http://127.0.0.1:{port}/v1")
    set_settings(db, query_breaker_cooldown_seconds=1)
    assert all(r[2] is None for r in search(db))
    with server_process("openai_server.py", "embeddings", port=port) as port:
        time.sleep(1.2)
        assert search(db)[0][2] is not None
        assert EmbeddingServer(port).requests() == 1


def test_a_failing_reranker_leaves_first_stage_order_with_a_note(db, embedding_server,
                                                                 rerank_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_reranker('rr', 'tei', NULL, %s)", (rerank_server.url,))
    plain = answer(db)
    rerank_server.fail_with(503)
    result = answer(db, options={"search": {"rerank": "rr"}})
    assert [r["chunk_id"] for r in result["retrieved"]] == [
        r["chunk_id"] for r in plain["retrieved"]]
    assert "first-stage order: the reranker failed" in result["note"]
    assert "HTTP 503" in result["note"] and result["degraded"] is None
    assert result["citations"] == plain["citations"]
    with notices(db) as seen:
        assert search(db, options={"rerank": "rr"}) == search(db)
    assert any("not reranked" in n.message_primary and n.severity == "WARNING"
               for n in seen)
