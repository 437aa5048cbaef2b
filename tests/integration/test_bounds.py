"""Bounds and cancellation: the bounds of rag.settings give a clear error (or, in a pipeline,
a dead letter with the reason, never a failed write), and long Python work returns to
PostgreSQL often enough that statement_timeout and pg_cancel_backend stop it."""

import threading
import time
from pathlib import Path

import psycopg
import pytest

# About 0.9 MB of varied words: under max_document_chars, thousands of chunks. How long
# chunking it takes depends on the machine (0.3-1.3 s seen), so the tests below time one warm
# run first and set their timeout or cancel well inside that: only a cancel that reaches the
# Python work can stop it then.
WORDS = ("checkpoint vacuum replica partition tuple buffer autovacuum sequence trigger "
         "analyze cluster reindex tablespace publication subscription").split()
LONG_TEXT = " ".join(f"{WORDS[i % len(WORDS)]}{i % 997}" for i in range(75_000))
HUGE_TEXT = "word " * 240_000  # 1.2 MB: over the default max_document_chars


def test_chunk_refuses_a_document_over_the_bound(db):
    with pytest.raises(psycopg.errors.ProgramLimitExceeded,
                       match="rag.chunk: the document has 1200000 characters, more than "
                             "max_document_chars \\(1000000\\)"):
        db.execute("SELECT count(*) FROM rag.chunk(%s)", (HUGE_TEXT,))
    db.execute("UPDATE rag.settings SET value = '2000000' WHERE key = 'max_document_chars'")
    assert db.execute("SELECT count(*) > 100 FROM rag.chunk(%s, 'tokens', 500)",
                      (HUGE_TEXT,)).fetchone() == (True,)


def warm_chunking_seconds(conn):
    """Seconds one rag.chunk of LONG_TEXT takes on this connection once its imports are warm."""
    conn.execute("SELECT count(*) FROM rag.chunk('warm up the imports', 50)")
    started = time.monotonic()
    conn.execute("SELECT count(*) FROM rag.chunk(%s, 50)", (LONG_TEXT,))
    return time.monotonic() - started


def test_statement_timeout_stops_chunking(db):
    assert len(LONG_TEXT) < 1_000_000
    timeout_ms = max(20, int(warm_chunking_seconds(db) * 1000 / 4))
    db.execute(f"SET statement_timeout = '{timeout_ms}ms'")
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout") as info:
        db.execute("SELECT count(*) FROM rag.chunk(%s, 50)", (LONG_TEXT,))
    assert "Traceback" not in str(info.value.diag.context)


def test_pg_cancel_backend_stops_chunking(db, db_url):
    errors = []
    conn = psycopg.connect(db_url, autocommit=True)
    pid = conn.info.backend_pid
    seconds = warm_chunking_seconds(conn)

    def run():
        try:
            conn.execute("SELECT count(*) FROM rag.chunk(%s, 50)", (LONG_TEXT,))
        except psycopg.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not db.execute("SELECT state = 'active' AND query LIKE '%%rag.chunk%%'"
                         " FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(seconds / 4)  # inside the Python work, past the SQL wrapper's checks
    db.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(60)
    conn.close()
    assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.QueryCanceled), errors
    assert "canceling statement due to user request" in str(errors[0])


@pytest.fixture
def tickets(db):
    db.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body')")
    return db


def test_a_document_over_the_bound_is_a_dead_letter_not_a_failed_write(tickets):
    db = tickets
    db.execute("INSERT INTO tickets VALUES (1, %s), (2, 'A short ticket.')", (HUGE_TEXT,))
    db.execute("CALL rag.process_queue('tickets')")
    dead = db.execute("SELECT document_id, last_error FROM rag.dead_letters").fetchall()
    assert [d[0] for d in dead] == ["1"]
    assert "max_document_chars (1000000)" in dead[0][1]
    assert db.execute("SELECT document_id FROM rag.tickets_chunks").fetchall() == [("2",)]
    # Changing the row queues it again, as any write does.
    db.execute("UPDATE tickets SET body = 'Shorter now.' WHERE id = 1")
    db.execute("CALL rag.process_queue('tickets')")
    assert db.execute("SELECT count(*) FROM rag.dead_letters").fetchone() == (0,)


def test_chunks_per_document_bound_in_a_sync_pipeline(db):
    """rag.documents is a sync pipeline: the bound applies inside the writer's transaction,
    and the write still commits; the row is left queued, and the worker makes it a dead
    letter with the reason."""
    db.execute("UPDATE rag.settings SET value = '3' WHERE key = 'max_chunks_per_document'")
    db.execute("INSERT INTO rag.documents (source, content) VALUES ('big', %s)",
               ("\n\n".join(f"Paragraph {i}. " + "words " * 300 for i in range(10)),))
    assert db.execute("SELECT count(*) FROM rag.documents").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM rag.documents_chunks").fetchone() == (0,)
    db.execute("CALL rag.process_queue()")
    (error,) = db.execute("SELECT last_error FROM rag.dead_letters").fetchone()
    assert "more than max_chunks_per_document (3)" in error


def private_kb(pid: int) -> int:
    """RssAnon: the backend's own memory. Not VmRSS, which also counts every page of
    shared_buffers the backend has touched: a backfill that writes 10,000 chunks and their
    index touches up to all of them (CI saw VmRSS +117 MB where another run saw +54 MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


@pytest.mark.slow
def test_memory_of_a_10000_chunk_backfill(db, embedding_server, capsys):
    """Private memory of the one backend that processes a 10,000-chunk backfill, before and
    after (the figure is printed for docs/reliability.md); bounded caches keep the growth
    small."""
    db.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (embedding_server.url,))
    db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
    db.execute("INSERT INTO notes SELECT g, 'Note ' || g || ': ' || md5(g::text)"
               " FROM generate_series(1, 10100) AS g")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body', embedder => 'srv')")
    pid = db.info.backend_pid
    db.execute("CALL rag.process_queue('notes', batch_size => 100, max_seconds => 0)")  # warm
    before = private_kb(pid)
    while db.execute("CALL rag.process_queue('notes', batch_size => 200)").fetchone()[0]:
        pass
    after = private_kb(pid)
    assert db.execute("SELECT count(*) FROM rag.notes_chunks").fetchone() == (10100,)
    with capsys.disabled():
        print(f"\n10,000-chunk backfill, one backend: RssAnon {before / 1024:.1f} MB before, "
              f"{after / 1024:.1f} MB after ({(after - before) / 1024:+.1f} MB)")
    assert after - before < 100 * 1024
