"""Faults against the real worker and a real loopback provider that is told to fail.

For each fault: the user's writes succeed, the queue keeps the work, the error shows in
rag.pipeline_status, and after recovery every row is embedded, its chunks match its current
content, and no text was embedded more often than its content changed (+1 for a failed
attempt whose request reached the provider). Also: a provider slower than the lease with two
workers, the server restarted mid-batch, and a worker SIGKILLed mid-batch."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from consistency import queued
from fix_openai import EmbeddingServer, free_port, server_process

REPO = Path(__file__).resolve().parents[2]
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
ROWS = {1: "Ticket 1: the disk on db1 is full.", 2: "Ticket 2: replication lag on db2.",
        3: "Ticket 3: a slow query on orders."}


def setup_pipeline(db, url, **options):
    options = {"timeout_seconds": 1, **options}
    db.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s,"
               " options => %s)", (url, json.dumps(options)))
    db.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)")
    db.cursor().executemany("INSERT INTO tickets VALUES (%s, %s)", list(ROWS.items()))
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', embedder => 'srv')")
    db.execute("SELECT rag.alter_pipeline('tickets', retry_base_seconds => 0.1,"
               " retry_max_seconds => 0.3, max_attempts => 3)")


def write_during_fault(db):
    """Every kind of write, while the provider is failing: all must succeed."""
    db.execute("INSERT INTO tickets VALUES (4, 'Ticket 4: backups failed last night.')")
    db.execute("UPDATE tickets SET body = 'Ticket 1: disk cleaned, WAL archived.' WHERE id = 1")
    db.execute("DELETE FROM tickets WHERE id = 3")


def process(db, **kwargs):
    args = "".join(f", {k} => {v!r}" for k, v in kwargs.items())
    return db.execute(f"CALL rag.process_queue('tickets'{args})").fetchone()[0]


def status(db):
    cur = db.execute("SELECT * FROM rag.pipeline_status WHERE pipeline = 'tickets'")
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def drain(db, seconds=60):
    """Recovery: dead letters back in the queue, then process until it is empty."""
    db.execute("SELECT rag.retry_failed('tickets')")
    deadline = time.monotonic() + seconds
    while queued(db, "tickets"):
        assert time.monotonic() < deadline, db.execute("SELECT * FROM rag.queue").fetchall()
        process(db)
        time.sleep(0.1)


def assert_consistent(db):
    """Every live row's chunks are exactly its current content; nothing else is stored."""
    live = dict(db.execute("SELECT id::text, body FROM tickets").fetchall())
    stored = db.execute("SELECT document_id, string_agg(content, ' ' ORDER BY ordinal),"
                        " count(*) FROM rag.tickets_chunks GROUP BY document_id").fetchall()
    assert {d: c for d, c, _ in stored} == live
    assert all(n == 1 for _, _, n in stored)  # short rows: one chunk each, no duplicates
    assert queued(db, "tickets") == 0


def assert_embedded_once(server: EmbeddingServer, db, extra: int = 0):
    counts = Counter(server.embedded_inputs())
    for (body,) in db.execute("SELECT body FROM tickets"):
        assert 1 <= counts[body] <= 1 + extra, (body, counts)


# (fault, what the error says, whether the failed request logged its inputs)
FAULTS = {
    "http 500": ({"status": 500}, "HTTP 500", False),
    "http 503": ({"status": 503}, "HTTP 503", False),
    "429 with Retry-After": ({"status": 429, "retry_after": 0.5}, "HTTP 429", False),
    "429 without Retry-After": ({"status": 429}, "HTTP 429", False),
    "slower than the timeout": ({"delay": 2.5}, "within 1 s", True),
    "reset mid-response": ({"reset": True}, "embedder srv", False),
    "malformed JSON": ({"body": "{\"data\": [{\"embedding\": "}, "embedder srv", False),
    "wrong dimension": ({"dimensions": 3}, "3-dimensional vectors", True),
    "fewer vectors than texts": ({"drop": 1}, "embeddings, got", True),
    "401": ({"status": 401}, "HTTP 401", False),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_provider_fault(db, embedding_server, fault):
    injected, message, logs_inputs = FAULTS[fault]
    setup_pipeline(db, embedding_server.url)
    embedding_server.fail_next({**injected, "times": 1})
    write_during_fault(db)
    assert process(db) == 0
    row = status(db)
    assert message in row["last_error"], row["last_error"]
    assert "Traceback" not in row["last_error"]
    # Rows 1, 2 and 4, and row 3, deleted (its job removes its chunks, if any).
    assert row["pending"] + row["failed"] == 4
    drain(db)
    assert_consistent(db)
    assert_embedded_once(embedding_server, db, extra=1 if logs_inputs else 0)
    # A delayed request the client gave up on still finishes (and logs its inputs) on the
    # server: let it, before the fixture clears the log for the next test.
    time.sleep(injected.get("delay", 0))


def test_connection_refused_until_the_provider_comes_back(db):
    port = free_port()
    setup_pipeline(db, f"http://127.0.0.1:{port}/v1")
    write_during_fault(db)
    process(db)
    assert "cannot connect" in status(db)["last_error"]
    with server_process("openai_server.py", "embeddings", port=port) as port:
        server = EmbeddingServer(port)
        drain(db)
        assert_consistent(db)
        assert_embedded_once(server, db)


def pgask(url, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python" / "src"), DATABASE_URL=url)
    return subprocess.Popen([sys.executable, "-m", "pgask.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_provider_slower_than_the_lease_with_two_workers(db, db_url, embedding_server):
    """Each request takes 1.5 s, the lease is 0.5 s: leases are renewed before each request
    and sized to the provider's timeout, so the second worker never takes a row the first
    one is embedding."""
    setup_pipeline(db, embedding_server.url, timeout_seconds=5, max_batch_inputs=2)
    db.execute("INSERT INTO tickets SELECT g, 'Ticket ' || g || ': disk full on db' || g"
               " FROM generate_series(10, 21) AS g")
    embedding_server.fail_next({"delay": 1.5, "times": 100})
    workers = [pgask(db_url, "worker", "--batch-size", "8", "--lease-seconds", "0.5",
                     "--exit-when-idle") for _ in range(2)]
    outputs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert_consistent(db)
    counts = Counter(embedding_server.embedded_inputs())
    assert len(counts) == 15 and max(counts.values()) == 1, counts


@pytest.mark.slow
def test_worker_sigkilled_mid_batch_loses_nothing(db, db_url, embedding_server):
    setup_pipeline(db, embedding_server.url, timeout_seconds=5)
    embedding_server.fail_next({"delay": 2})
    worker = pgask(db_url, "worker", "--exit-when-idle")
    wait_for(lambda: embedding_server.requests() >= 1)  # mid-batch
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    write_during_fault(db)
    drain(db)
    assert_consistent(db)
    # The killed client's backend finished its call (or its lease was freed): either way
    # no current text was embedded twice.
    assert_embedded_once(embedding_server, db, extra=1)


@pytest.mark.slow
def test_server_restarted_during_processing(db_url, postgresql_proc, embedding_server):
    db = psycopg.connect(db_url, autocommit=True)
    setup_pipeline(db, embedding_server.url, timeout_seconds=5)
    embedding_server.fail_next({"delay": 2})
    errors = []

    def work():
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("CALL rag.process_queue('tickets')")
        except psycopg.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    wait_for(lambda: embedding_server.requests() >= 1)
    log = Path(postgresql_proc.datadir).parent / "restart.log"
    subprocess.run([PG_CTL, "restart", "-D", postgresql_proc.datadir, "-m", "fast", "-w",
                    "-l", str(log)], check=True, stdout=subprocess.DEVNULL, timeout=60)
    thread.join(30)
    assert errors  # the worker's connection went with the server
    db = psycopg.connect(db_url, autocommit=True)
    write_during_fault(db)
    drain(db)
    assert_consistent(db)
    assert_embedded_once(embedding_server, db, extra=1)
