"""Reads on a hot standby (issue 14): everything read-only works on a streaming replica of the
test cluster, and the answer log, which only the primary can write, is skipped visibly."""

from __future__ import annotations

import psycopg
import pytest

from fix_db import add_document

INDEXES = ("Multicolumn Indexes. An index can be defined on more than one column of a table. "
           "A multicolumn B-tree index is created with CREATE INDEX test2_mm_idx ON test2 "
           "(major, minor). Only B-tree, GiST, GIN and BRIN indexes support several columns.")
VACUUM = ("VACUUM reclaims storage occupied by dead tuples. Tuples that are deleted or "
          "obsoleted by an update are not physically removed from their table until a VACUUM "
          "is done.")
QUESTION = "How do I create a B-tree index on two columns?"
SKIPPED = "skipped: read-only (hot standby)"
BI_VIEWS = ("rag.pipeline_status", "rag.dead_letters", "rag.answers_daily",
            "rag.top_unanswered", "rag.document_usage", "rag.answer_feedback_totals")


@pytest.fixture
def replica(db, standby):
    """Documents written on the primary, one answer logged there, and a connection to the
    same database on the standby once it has replayed all of it."""
    add_document(db, "indexes.html", INDEXES, "Multicolumn Indexes")
    add_document(db, "vacuum.html", VACUUM, "VACUUM")
    (logged,) = db.execute("SELECT rag.answer(%s)", (QUESTION,)).fetchone()
    standby.wait_for(db)
    with standby.connect(db.info.dbname) as conn:
        yield conn, logged


def _search(conn, mode):
    return conn.execute(
        "SELECT chunk_id, score, vector_score, keyword_score FROM rag.search(%s, 5, mode => %s)"
        " ORDER BY rank", (QUESTION, mode)).fetchall()


def test_the_standby_is_a_read_only_replica(replica):
    conn, _ = replica
    assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO rag.documents (source, content) VALUES ('x', 'y')")


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_search_on_the_standby_equals_the_primary(db, replica, mode):
    conn, _ = replica
    on_standby = _search(conn, mode)
    assert on_standby, f"{mode} search found nothing on the standby"
    assert on_standby == _search(db, mode)


def test_answer_on_the_standby_skips_the_log_visibly(db, replica):
    conn, logged = replica
    (result,) = conn.execute("SELECT rag.answer(%s)", (QUESTION,)).fetchone()
    assert result["answer_id"] is None
    assert result["log"] == SKIPPED
    assert result["mode"] == "extractive"
    assert result["answer"] == logged["answer"]
    assert [c["chunk_id"] for c in result["citations"]] == \
        [c["chunk_id"] for c in logged["citations"]]
    assert logged["log"] == "logged" and logged["answer_id"] is not None
    # Nothing was written: the primary's log still holds only its own answer.
    assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone() == (1,)

    (text,) = conn.execute("SELECT rag_answer(%s)", (QUESTION,)).fetchone()
    assert text.startswith(logged["answer"])
    assert "Sources:\n[1] Multicolumn Indexes (indexes.html)" in text

    sources = conn.execute("SELECT answer_id, n, source, mode FROM rag.answer_sources(%s)",
                           (QUESTION,)).fetchall()
    assert sources and sources[0] == (None, 1, "indexes.html", "extractive")


def test_answer_option_log_false_says_so(replica):
    conn, _ = replica
    (result,) = conn.execute("SELECT rag.answer(%s, options => '{\"log\": false}')",
                             (QUESTION,)).fetchone()
    assert result["answer_id"] is None
    assert result["log"] == "skipped: option log is false"


def test_status_and_bi_views_on_the_standby(db, replica):
    conn, logged = replica
    for view in BI_VIEWS:
        on_standby = conn.execute(f"SELECT * FROM {view}").fetchall()
        assert on_standby == db.execute(f"SELECT * FROM {view}").fetchall(), view
    status = conn.execute("SELECT pipeline, pending, failed FROM rag.pipeline_status"
                          " WHERE pipeline = 'documents'").fetchone()
    assert status == ("documents", 0, 0)
    daily = conn.execute("SELECT answers, extractive FROM rag.answers_daily").fetchall()
    assert daily == [(1, 1)]


def test_writes_on_the_standby_fail_with_postgres_error_not_traceback(replica):
    conn, logged = replica
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
        conn.execute("SELECT rag.feedback(%s, true)", (logged["answer_id"],))
    assert "read-only transaction" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_read_only_transaction_on_the_primary_skips_the_log(db):
    add_document(db, "indexes.html", INDEXES, "Multicolumn Indexes")
    with db.transaction():
        db.execute("SET TRANSACTION READ ONLY")
        (result,) = db.execute("SELECT rag.answer(%s)", (QUESTION,)).fetchone()
    assert result["answer_id"] is None
    assert result["log"] == "skipped: read-only transaction"
    assert result["citations"]
    assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone() == (0,)
