"""The queue against a real OpenAI-compatible server on loopback: provider failures never fail
a write, every row ends up embedded, leases survive a killed worker, workers never share a
row, stale results are discarded, and a model switch keeps search answering."""

import signal
import threading
import time
from collections import Counter

import commands
import psycopg
import pytest
from consistency import queued
from fix_openai import free_port


def register(db, server, name="srv", **options):
    import json

    db.execute("SELECT rag.create_embedder(%s, 'openai', 'all-MiniLM-L6-v2-int8', 384, %s,"
               " options => %s)", (name, server.url if server else
                                   f"http://127.0.0.1:{free_port()}/v1", json.dumps(options)))


@pytest.fixture
def table(db):
    db.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)")
    return db


def make_pipeline(db, embedder="srv", rows=3, **alter):
    db.execute(f"INSERT INTO tickets SELECT g, 'Ticket ' || g || ': the disk on db' || g"
               f" || ' is full' FROM generate_series(1, {rows}) g")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', embedder => %s)",
               (embedder,))
    settings = {"retry_base_seconds": 0.2, "retry_max_seconds": 1.0, **alter}
    db.execute("SELECT rag.alter_pipeline('tickets', " + ", ".join(
        f"{k} => {v!r}" for k, v in settings.items()) + ")")


def process(db, **kwargs):
    args = ", ".join(f"{k} => {v!r}" for k, v in kwargs.items())
    (processed,) = db.execute(
        f"CALL rag.process_queue(pipeline => 'tickets'{', ' + args if args else ''})"
    ).fetchone()
    return processed


def queue_rows(db):
    return db.execute("SELECT document_id, status, attempts, last_error,"
                      " extract(epoch FROM not_before - now())"
                      " FROM rag.queue WHERE pipeline = 'tickets' ORDER BY document_id::int"
                      ).fetchall()


def embedded_ids(db):
    return {r[0] for r in db.execute("SELECT DISTINCT document_id FROM rag.tickets_chunks")}


def drain(db, seconds=30):
    """Processes until nothing is queued, waiting out backoffs."""
    deadline = time.monotonic() + seconds
    while queued(db, "tickets", "pending"):
        assert time.monotonic() < deadline, queue_rows(db)
        process(db)
        time.sleep(0.1)


def test_openai_provider_embeds_like_the_local_model(table, embedding_server):
    register(table, embedding_server)
    make_pipeline(table)
    assert process(table) == 3
    assert embedded_ids(table) == {"1", "2", "3"}
    (similarity,) = table.execute(
        "SELECT 1 - (embedding <=> rag.embed(content)) FROM rag.tickets_chunks"
        " WHERE document_id = '1'").fetchone()
    assert similarity > 0.9999
    # Only the local model reads sentences in context; a remote one's chunks have none stored.
    assert table.execute("SELECT count(*) FROM rag.tickets_chunks WHERE sentence_spans IS NULL"
                         " AND sentence_vectors IS NULL").fetchone() == (3,)
    assert sorted(embedding_server.embedded_inputs()) == sorted(
        f"Ticket {i}: the disk on db{i} is full" for i in (1, 2, 3))
    rows = table.execute("SELECT document_id FROM rag.search('db2 disk full', 1,"
                         " pipeline => 'tickets')").fetchall()
    assert rows == [("2",)]


def test_http_500_is_retried_with_backoff_until_it_works(table, embedding_server):
    register(table, embedding_server)
    embedding_server.fail_next({"status": 500, "times": 2})
    make_pipeline(table)
    assert process(table) == 0
    (_, state, attempts, error, wait) = queue_rows(table)[0]
    assert (state, attempts) == ("pending", 1)
    assert "HTTP 500" in error and "injected failure" in error
    assert 0 < wait <= 0.2
    drain(table)
    assert embedded_ids(table) == {"1", "2", "3"}
    assert queue_rows(table) == []


def test_429_retry_after_is_honoured(table, embedding_server):
    register(table, embedding_server)
    embedding_server.fail_next({"status": 429, "retry_after": 3})
    make_pipeline(table)
    process(table)
    waits = [row[4] for row in queue_rows(table)]
    assert all(2.5 < w <= 3.0 for w in waits), waits
    assert "HTTP 429" in queue_rows(table)[0][3]


def test_timeout_is_a_retryable_failure(table, embedding_server):
    register(table, embedding_server, timeout_seconds=1)
    embedding_server.fail_next({"delay": 3})
    make_pipeline(table)
    process(table)
    error = queue_rows(table)[0][3]
    assert error == ("embedder srv: no answer from " + embedding_server.url
                     + " within 1 s (options.timeout_seconds)")
    drain(table)
    assert embedded_ids(table) == {"1", "2", "3"}


def test_provider_down_never_fails_the_write(table):
    register(table, None)  # a port nobody listens on: connection refused
    make_pipeline(table, max_attempts=2)
    table.execute("INSERT INTO tickets VALUES (10, 'written while the provider is down')")
    assert table.execute("SELECT count(*) FROM tickets").fetchone() == (4,)
    process(table)
    assert "cannot connect to http://127.0.0.1:" in queue_rows(table)[0][3]
    time.sleep(1.2)
    process(table)
    dead = table.execute("SELECT document_id, attempts, last_error FROM rag.dead_letters"
                         " ORDER BY document_id::int").fetchall()
    assert [(d[0], d[1]) for d in dead] == [("1", 2), ("2", 2), ("3", 2), ("10", 2)]
    status = table.execute("SELECT pending, failed, last_error FROM rag.pipeline_status"
                           " WHERE pipeline = 'tickets'").fetchone()
    assert status[:2] == (0, 4) and "cannot connect" in status[2]


def test_dead_letters_are_retried_on_request(table, embedding_server):
    register(table, embedding_server)
    embedding_server.fail_next({"status": 503, "times": 100})
    make_pipeline(table, max_attempts=1)
    process(table)
    assert table.execute("SELECT count(*) FROM rag.dead_letters").fetchone() == (3,)
    embedding_server.fail_next()
    assert table.execute("SELECT rag.retry_failed('tickets')").fetchone() == (3,)
    drain(table)
    assert embedded_ids(table) == {"1", "2", "3"}


def test_authentication_errors_go_straight_to_dead_letters_without_the_key(
        table, embedding_server):
    table.execute("SELECT rag.set_secret('srv_key', 'sk-test-SECRET1234567', ARRAY[%s])",
                  (embedding_server.url,))
    table.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384,"
                  " %s, 'secret:srv_key')", (embedding_server.url,))
    embedding_server.fail_next({"status": 401, "message":
                                "Incorrect API key provided: sk-test-SECRET1234567"})
    make_pipeline(table, rows=1)
    process(table)
    ((_, state, attempts, error, _),) = queue_rows(table)
    assert (state, attempts) == ("failed", 1)
    assert "HTTP 401" in error and "check api_key_env" in error
    assert "SECRET1234567" not in error
    assert "SECRET1234567" not in str(table.execute("SELECT * FROM rag.embedders").fetchall())


def test_missing_api_key_names_the_variable_not_a_value(table, embedding_server):
    table.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384,"
                  " %s, 'PGASK_TEST_NO_SUCH_KEY')", (embedding_server.url,))
    make_pipeline(table, rows=1)
    process(table)
    assert queue_rows(table)[0][1:4] == (
        "failed", 1, "embedder srv: no API key: environment variable PGASK_TEST_NO_SUCH_KEY of "
        "the database server is not set")
    # A search cannot embed its query either: vector mode fails naming the variable, hybrid
    # goes on by keyword and its NOTICE names it (issue 33); never the value.
    with pytest.raises(psycopg.errors.ExternalRoutineException, match="PGASK_TEST_NO_SUCH_KEY"):
        table.execute("SELECT * FROM rag.search('disk', 1, mode => 'vector',"
                      " pipeline => 'tickets')")
    notices = []
    table.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    table.execute("SELECT * FROM rag.search('disk', 1, pipeline => 'tickets')").fetchall()
    assert any("PGASK_TEST_NO_SUCH_KEY" in n and "keyword" in n for n in notices), notices


def run_in_thread(url, sql):
    """Runs `sql` on its own connection in a thread; returns (thread, pid, errors)."""
    conn = psycopg.connect(url, autocommit=True)
    pid = conn.info.backend_pid
    errors = []

    def target():
        try:
            conn.execute(sql)
        except psycopg.Error as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, pid, errors


def wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_killed_worker_loses_nothing(table, db_url, embedding_server):
    register(table, embedding_server)
    embedding_server.fail_next({"delay": 4})
    make_pipeline(table)
    thread, pid, errors = run_in_thread(
        db_url, "CALL rag.process_queue('tickets', lease_seconds => 1)")
    wait_for(lambda: embedding_server.requests() >= 1)  # the worker is mid-batch
    table.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(1.1)  # its lease expires: the rows are anyone's again
    drain(table)
    assert embedded_ids(table) == {"1", "2", "3"}
    thread.join(20)
    assert errors and "terminating connection" in str(errors[0])
    # The dead worker wrote nothing after its embedding call came back.
    assert table.execute("SELECT count(*) FROM rag.tickets_chunks").fetchone() == (3,)


def test_stale_result_is_discarded(table, db_url, embedding_server):
    register(table, embedding_server)
    embedding_server.fail_next({"delay": 2})
    make_pipeline(table, rows=1)
    thread, _, errors = run_in_thread(db_url, "CALL rag.process_queue('tickets')")
    wait_for(lambda: embedding_server.requests() >= 1)
    table.execute("UPDATE tickets SET body = 'Ticket 1: resolved, disk cleaned' WHERE id = 1")
    thread.join(20)
    assert not errors
    # The embedding of the old text came back after the row changed: it was discarded, and
    # the same call went on to embed the new text.
    assert table.execute("SELECT stale_discarded FROM rag.pipeline_status"
                         " WHERE pipeline = 'tickets'").fetchone() == (1,)
    assert embedding_server.embedded_inputs() == [
        "Ticket 1: the disk on db1 is full", "Ticket 1: resolved, disk cleaned"]
    assert table.execute("SELECT content FROM rag.tickets_chunks").fetchall() == [
        ("Ticket 1: resolved, disk cleaned",)]
    assert queue_rows(table) == []


def pgask_process(url, *args):
    return commands.pgask_process(*args, database_url=url)


def test_two_workers_never_embed_the_same_row_twice(table, db_url, embedding_server):
    register(table, embedding_server)
    make_pipeline(table, rows=60)
    # Every request waits a second, so the first worker cannot drain all 15 batches before
    # the second one has started (a busy CI machine took seconds to start it).
    embedding_server.fail_next({"delay": 1, "times": 15})
    workers = [pgask_process(db_url, "worker", "--batch-size", "4", "--exit-when-idle")
               for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert embedded_ids(table) == {str(i) for i in range(1, 61)}
    counts = Counter(embedding_server.embedded_inputs())
    assert len(counts) == 60 and max(counts.values()) == 1
    processed = [int(out.rsplit("worker stopped: ", 1)[1].split()[0]) for out, _ in outputs]
    assert sum(processed) == 60 and all(processed), processed  # both took part


def test_worker_concurrency_embeds_each_row_once_with_every_connection_taking_part(
        table, db_url, embedding_server):
    register(table, embedding_server)
    make_pipeline(table, rows=60)
    table.execute("SELECT rag._drain_inbox('tickets', 100)")  # the backfill: 60 jobs
    # Every request waits a second, so one connection cannot drain the queue alone while the
    # others are still connecting: all four must hold a batch (and a request) at once.
    embedding_server.fail_next({"delay": 1, "times": 15})
    worker = commands.pgask("worker", "--concurrency", "4", "--batch-size", "4",
                            "--exit-when-idle", database_url=db_url, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert embedded_ids(table) == {str(i) for i in range(1, 61)}
    counts = Counter(embedding_server.embedded_inputs())
    assert len(counts) == 60 and max(counts.values()) == 1
    assert embedding_server.requests() == 15  # 60 rows in batches of 4, none sent twice
    slots = {line.split("]", 1)[0] + "]" for line in worker.stdout.splitlines()
             if line.startswith("[") and "processed" in line}
    assert slots == {"[1/4]", "[2/4]", "[3/4]", "[4/4]"}, worker.stdout
    assert "worker stopped: 60 rows processed" in worker.stdout


def test_worker_concurrency_must_be_positive(db_url):
    result = commands.pgask("worker", "--concurrency", "0", database_url=db_url)
    assert result.returncode != 0
    assert "--concurrency must be at least 1, got 0" in result.stderr


def test_worker_stops_gracefully_on_sigterm(table, db_url):
    make_pipeline(table, embedder="local", rows=1)
    worker = pgask_process(db_url, "worker", "--idle-seconds", "0.5")
    wait_for(lambda: embedded_ids(table) == {"1"})
    table.execute("INSERT INTO tickets VALUES (2, 'woken by NOTIFY, not by polling')")
    wait_for(lambda: embedded_ids(table) == {"1", "2"}, seconds=5)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "worker stopped: 2 rows processed" in out


def test_backfill_command_reports_progress_and_failures(table, db_url):
    make_pipeline(table, embedder="local", rows=5)
    result = pgask_process(db_url, "backfill", "tickets")
    out, err = result.communicate(timeout=120)
    assert result.returncode == 0, err
    assert out.strip() == "backfill tickets: 5 rows processed, 0 failed"
    assert "backfill tickets" in err and "5/5" in err  # the progress bar
    assert embedded_ids(table) == {str(i) for i in range(1, 6)}


def test_blue_green_reembed_keeps_search_answering(table, db_url, embedding_server):
    make_pipeline(table, embedder="local", rows=30)
    process(table)
    register(table, embedding_server)
    table.execute("SELECT rag.reembed('tickets', 'srv')")
    status = table.execute("SELECT embedder, reembedding_to, reembed_remaining"
                           " FROM rag.pipeline_status WHERE pipeline = 'tickets'").fetchone()
    assert status == ("local", "srv", 30)

    stop = threading.Event()
    answers, failures = [], []

    def search_forever():
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    rows = conn.execute("SELECT document_id FROM"
                                        " rag.search('db7 disk full', 3,"
                                        " pipeline => 'tickets')").fetchall()
                    answers.append(len(rows))
                except psycopg.Error as exc:
                    failures.append(exc)

    searcher = threading.Thread(target=search_forever)
    searcher.start()
    try:
        while process(table, batch_size=5, max_seconds=0) > 0:
            pass
        wait_for(lambda: len(answers) > 20)
    finally:
        stop.set()
        searcher.join(30)
    assert failures == []
    assert set(answers) == {3}
    status = table.execute("SELECT embedder, reembedding_to, reembed_remaining"
                           " FROM rag.pipeline_status WHERE pipeline = 'tickets'").fetchone()
    assert status == ("srv", None, 0)
    assert table.execute("SELECT to_regclass('rag.tickets_chunks_1'),"
                         " to_regclass('rag.tickets_chunks_2') IS NOT NULL").fetchone() == (
        None, True)
    documents = [t for t in embedding_server.embedded_inputs() if t != "db7 disk full"]
    assert len(documents) == len(set(documents)) == 30
    rows = table.execute("SELECT document_id FROM rag.search('db7 disk full', 1,"
                         " pipeline => 'tickets')").fetchall()
    assert rows == [("7",)]


def test_embedder_pinned_by_a_pipeline_cannot_be_redefined(table):
    make_pipeline(table, embedder="local", rows=1)
    with pytest.raises(psycopg.errors.ObjectInUse,
                       match="embedder local is pinned by pipeline"):
        table.execute("SELECT rag.create_embedder('local', 'local')")


def test_switch_waits_briefly_for_a_search_holding_the_old_set_and_never_blocks_writers(
        table, db_url, embedding_server):
    make_pipeline(table, embedder="local", rows=6)
    process(table)
    register(table, embedding_server)
    table.execute("SELECT rag.reembed('tickets', 'srv')")
    with psycopg.connect(db_url) as reader, psycopg.connect(db_url, autocommit=True) as writer:
        # A search in a transaction that stays open holds the old set's table.
        found = reader.execute("SELECT document_id FROM rag.search('db3 disk full', 3,"
                               " pipeline => 'tickets')").fetchall()
        assert len(found) == 3
        done = threading.Event()
        switcher = threading.Thread(target=lambda: (process(table), done.set()))
        switcher.start()
        time.sleep(0.5)  # the switch is waiting for the reader now
        writer.execute("SET statement_timeout = '1s'")
        writer.execute("INSERT INTO tickets VALUES (100, 'Ticket 100: a new disk')")
        assert not done.is_set()
        switcher.join(30)
        # It gave up after its lock timeout rather than queue every later search behind it.
        assert table.execute("SELECT active_set FROM rag.pipelines WHERE name = 'tickets'"
                             ).fetchone() == (1,)
        again = reader.execute("SELECT document_id FROM rag.search('db3 disk full', 3,"
                               " pipeline => 'tickets')").fetchall()
        assert again == found
        reader.commit()
    drain(table)  # the row written meanwhile, for both sets
    process(table)  # the search is over: the switch goes through
    assert table.execute("SELECT active_set, embedder FROM rag.pipelines"
                         " WHERE name = 'tickets'").fetchone() == (2, "srv")
    assert len(table.execute("SELECT * FROM rag.search('db3 disk full', 3,"
                             " pipeline => 'tickets')").fetchall()) == 3


def inbox(db):
    """The keys each captured statement recorded, in the order they were written."""
    return [r[0] for r in db.execute("SELECT document_ids FROM rag.inbox"
                                     " WHERE pipeline = 'tickets' ORDER BY enqueued_at, ctid")]


def test_writes_append_to_the_inbox_and_become_one_job_per_row(table):
    register(table, None)  # nothing is embedded here: the test is about the capture
    make_pipeline(table, rows=0)
    table.execute("INSERT INTO tickets VALUES (1, 'disk full'), (2, 'login fails')")
    table.execute("UPDATE tickets SET body = 'disk full again' WHERE id = 1")
    # A write evaluates none of the pipeline's SQL: every row it touched is recorded (the
    # worker finds nothing changed and writes nothing).
    table.execute("UPDATE tickets SET id = id")
    # The writes only appended, one row per statement; no job exists yet, but the status
    # counts each key once.
    assert inbox(table) == [["1", "2"], ["1"], ["1", "2"]]
    assert queue_rows(table) == []
    assert table.execute("SELECT pending, lag_seconds >= 0 FROM rag.pipeline_status"
                         " WHERE pipeline = 'tickets'").fetchone() == (2, True)
    # One move takes the keys of all three statements: each key once, in key order.
    assert table.execute("SELECT rag._drain_inbox('tickets', 100)").fetchone() == (2,)
    assert inbox(table) == []
    assert table.execute("SELECT document_id, generation FROM rag.queue"
                         " ORDER BY document_id").fetchall() == [("1", 1), ("2", 1)]
    # A row written again while its job waits: the same job, a new generation.
    table.execute("UPDATE tickets SET body = 'disk full, third time' WHERE id = 1")
    table.execute("SELECT rag._drain_inbox('tickets', 100)")
    assert table.execute("SELECT document_id, generation FROM rag.queue"
                         " ORDER BY document_id").fetchall() == [("1", 2), ("2", 1)]
    # max_rows bounds one move (in keys); the rest waits for the next one.
    for key in range(3, 6):
        table.execute("INSERT INTO tickets VALUES (%s, 'more')", (key,))
    assert table.execute("SELECT rag._drain_inbox('tickets', 2)").fetchone() == (2,)
    assert inbox(table) == [["5"]]


def test_a_bulk_statement_is_one_append(table):
    """COPY or INSERT ... SELECT of many rows: one row in the inbox, holding every key."""
    register(table, None)
    make_pipeline(table, rows=0)
    table.execute("INSERT INTO tickets SELECT g, 'row ' || g FROM generate_series(1, 500) g")
    assert [len(keys) for keys in inbox(table)] == [500]
    assert table.execute("SELECT pending FROM rag.pipeline_status"
                         " WHERE pipeline = 'tickets'").fetchone() == (500,)


def test_a_write_to_a_leased_row_waits_in_the_inbox_until_the_lease_ends(table):
    register(table, None)
    make_pipeline(table, rows=1)
    # The create's request to check every row (counted as one) becomes the job for row 1.
    assert table.execute("SELECT rag._drain_inbox(NULL, 100)").fetchone() == (1,)
    assert table.execute("SELECT generation FROM rag.queue").fetchall() == [(1,)]
    table.execute("UPDATE rag.queue SET leased_until = now() + interval '1 minute',"
                  " lease_owner = 'elsewhere:1:abc'")
    table.execute("UPDATE tickets SET body = 'written while a worker holds the job'")
    # Moving it now would wait on the worker's row lock; it stays, and the job is untouched.
    assert table.execute("SELECT rag._drain_inbox(NULL, 100)").fetchone() == (0,)
    assert inbox(table) == [["1"]]
    assert table.execute("SELECT generation FROM rag.queue").fetchall() == [(1,)]
    table.execute("UPDATE rag.queue SET leased_until = now() - interval '1 second'")
    assert table.execute("SELECT rag._drain_inbox(NULL, 100)").fetchone() == (1,)
    assert table.execute("SELECT generation FROM rag.queue").fetchall() == [(2,)]


def test_captured_writes_of_a_dropped_pipeline_are_discarded(table):
    register(table, None)
    make_pipeline(table, rows=0)
    table.execute("INSERT INTO tickets VALUES (1, 'disk full')")
    # What rag.drop_pipeline leaves nothing of; a row the DELETE missed (a concurrent write)
    # is dropped by the move, not turned into a job of a pipeline that is gone.
    table.execute("INSERT INTO rag.inbox (pipeline, document_ids) VALUES ('gone', '{1}')")
    table.execute("SELECT rag.drop_pipeline('tickets')")
    assert table.execute("SELECT pipeline FROM rag.inbox").fetchall() == [("gone",)]
    assert table.execute("SELECT rag._drain_inbox(NULL, 100)").fetchone() == (1,)
    assert table.execute("SELECT count(*) FROM rag.inbox").fetchone() == (0,)
    assert table.execute("SELECT count(*) FROM rag.queue").fetchone() == (0,)
