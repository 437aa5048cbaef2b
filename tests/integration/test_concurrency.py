"""Concurrency property test: N writers doing seeded random inserts, updates, deletes and
truncates on a source table while M workers process the queue. At quiescence the pipeline
is exactly in step with the table (tests/consistency.py): every live row's chunks are its
current content, no chunk of a deleted row, no duplicate, BM25 statistics equal a recount."""

import random
import threading
import time

import psycopg
import pytest
from consistency import problems, queued

WRITERS = 3
WORKERS = 2
OPERATIONS = 120  # per writer: bounded work, about a minute on a loaded 2-core machine
WORDS = ("disk wal index vacuum replica lag query plan lock checkpoint backup restore "
         "partition tuple page buffer cache autovacuum bloat sequence trigger").split()


def random_text(rng: random.Random) -> str:
    paragraphs = rng.randint(1, 4)
    return "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 220)))
                       for _ in range(paragraphs))


def writer(url: str, seed: int, errors: list) -> None:
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(OPERATIONS):
            op = rng.choices(["insert", "update", "delete", "truncate"], [45, 40, 14, 1])[0]
            key = rng.randint(1, 60)
            try:
                if op == "insert":
                    conn.execute("INSERT INTO docs VALUES (%s, %s) ON CONFLICT (id) DO UPDATE"
                                 " SET body = excluded.body", (key, random_text(rng)))
                elif op == "update":
                    conn.execute("UPDATE docs SET body = %s WHERE id = %s",
                                 (random_text(rng), key))
                elif op == "delete":
                    conn.execute("DELETE FROM docs WHERE id = %s", (key,))
                else:
                    conn.execute("TRUNCATE docs")
            except psycopg.errors.DeadlockDetected:
                pass  # two writers of the same rows: PostgreSQL's answer, not pgask's
            except psycopg.Error as exc:
                errors.append(exc)


def worker(url: str, stop: threading.Event, errors: list) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            try:
                (done,) = conn.execute("CALL rag.process_queue('docs', batch_size => 8,"
                                       " max_seconds => 2)").fetchone()
            except psycopg.Error as exc:
                errors.append(exc)
                return
            if not done:
                time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [12])
def test_random_writes_and_workers_end_in_step(db, db_url, embedding_server, seed):
    db.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (embedding_server.url,))
    db.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('docs', 'docs', 'body', embedder => 'srv',"
               " chunker => '{\"max_tokens\": 120}')")
    db.execute("SELECT rag.alter_pipeline('docs', retry_base_seconds => 0.2,"
               " retry_max_seconds => 1)")
    write_errors: list = []
    work_errors: list = []
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(db_url, stop, work_errors))
               for _ in range(WORKERS)]
    writers = [threading.Thread(target=writer, args=(db_url, seed * 100 + i, write_errors))
               for i in range(WRITERS)]
    for thread in workers + writers:
        thread.start()
    for thread in writers:
        thread.join(300)
    stop.set()
    for thread in workers:
        thread.join(60)
    assert write_errors == []
    assert work_errors == []
    # Quiescence: whatever is still queued (or backing off after a failed attempt) is
    # processed.
    deadline = time.monotonic() + 120
    while queued(db, "docs"):
        assert time.monotonic() < deadline, db.execute(
            "SELECT document_id, status, attempts, last_error FROM rag.queue").fetchall()
        db.execute("CALL rag.process_queue('docs')")
        time.sleep(0.2)
    assert db.execute("SELECT count(*) FROM docs").fetchone()[0] > 0
    assert problems(db, "docs", "docs") == []
