"""rag.schedule: pg_cron processes a pipeline's queue with no worker process.

The scheduling test starts a cluster of its own, because pg_cron must be in
shared_preload_libraries and runs jobs in one database only (cron.database_name). The job's
first run waits for the next minute boundary (pg_cron's granularity), so the test polls the
queue, bounded, instead of asserting a time.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from fix_cluster import BIN, Cluster

from pgask.install import install
from pgask.uninstall import uninstall

PG_CRON = BIN.parent / "lib" / "pg_cron.so"
POLL_LIMIT_SECONDS = 240


@pytest.fixture
def cron_db(tmp_path):
    if not PG_CRON.exists():
        pytest.skip(f"pg_cron is not installed ({PG_CRON} is missing): "
                    "apt-get install postgresql-15-cron")
    cluster = Cluster(tmp_path, {"shared_preload_libraries": "pg_cron",
                                 "cron.database_name": "sched"})
    cluster.start()
    try:
        url = cluster.create_database("sched")
        with psycopg.connect(url, autocommit=True) as conn:
            install(conn)
            conn.execute("CREATE EXTENSION pg_cron")
            yield conn
    finally:
        cluster.stop()


def _jobs(conn):
    return conn.execute("SELECT jobname, schedule, command FROM cron.job ORDER BY jobid").fetchall()


def test_a_scheduled_job_processes_the_queue(cron_db):
    conn = cron_db
    conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    conn.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    (job,) = conn.execute("SELECT rag.schedule('notes', every => '2 seconds')").fetchone()
    # Idempotent: scheduling again keeps one job per pipeline.
    assert conn.execute("SELECT rag.schedule('notes', every => '2 seconds')").fetchone() == (job,)
    assert _jobs(conn) == [("pgask:notes", "* * * * *", "CALL rag._run_schedule('notes', 2)")]
    conn.execute("INSERT INTO notes VALUES (1, 'Backups run at midnight.'),"
                 " (2, 'The standby is in another region.')")

    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    status = None
    while time.monotonic() < deadline:
        status = conn.execute("SELECT pending, leased, done FROM rag.pipeline_status"
                              " WHERE pipeline = 'notes'").fetchone()
        if status == (0, 0, 2):
            break
        time.sleep(1)
    assert status == (0, 0, 2), (
        f"the job did not process the queue within {POLL_LIMIT_SECONDS} s: {status}; runs: "
        f"{conn.execute('SELECT status, return_message FROM cron.job_run_details').fetchall()}")
    hits = conn.execute("SELECT document_id FROM rag.search('when do backups run', 1,"
                        " pipeline => 'notes')").fetchall()
    assert hits == [("1",)]

    # A longer interval becomes a plain cron schedule; unschedule removes it, once.
    conn.execute("SELECT rag.schedule('notes', every => '15 minutes')")
    assert _jobs(conn) == [("pgask:notes", "*/15 * * * *",
                            "CALL rag.process_queue('notes', max_seconds => 900)")]
    assert conn.execute("SELECT rag.unschedule('notes')").fetchone() == (True,)
    assert conn.execute("SELECT rag.unschedule('notes')").fetchone() == (False,)
    assert _jobs(conn) == []


def test_dropping_a_pipeline_removes_its_job(cron_db):
    cron_db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    cron_db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    cron_db.execute("SELECT rag.schedule('notes', every => '1 hour')")
    assert _jobs(cron_db)[0][1] == "0 */1 * * *"
    cron_db.execute("SELECT rag.drop_pipeline('notes')")
    assert _jobs(cron_db) == []


def test_uninstall_removes_the_jobs(cron_db):
    cron_db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    cron_db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    cron_db.execute("SELECT rag.schedule('notes')")
    assert uninstall(cron_db).cron_jobs == ["pgask:notes"]
    assert _jobs(cron_db) == []


def test_without_pg_cron_schedule_says_what_to_install(db):
    with pytest.raises(psycopg.errors.FeatureNotSupported,
                       match="rag.schedule: the pg_cron extension is not installed") as caught:
        db.execute("SELECT rag.schedule('documents', every => '10 seconds')")
    hint = caught.value.diag.message_hint
    assert "postgresql-15-cron" in hint and "shared_preload_libraries" in hint
    assert "cron.database_name" in hint
    assert db.execute("SELECT rag.unschedule('documents')").fetchone() == (False,)


@pytest.mark.parametrize("every, expected", [
    ("0 seconds", "whole number of seconds, at least 1"),
    ("1.5 seconds", "whole number of seconds, at least 1"),
    ("7 minutes", "whole minutes dividing an hour"),
    ("90 minutes", "whole minutes dividing an hour"),
])
def test_schedule_refuses_intervals_cron_cannot_keep(db, every, expected):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=expected):
        db.execute("SELECT rag.schedule('documents', every => %s)", (every,))


def test_schedule_names_a_missing_pipeline(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="nope"):
        db.execute("SELECT rag.schedule('nope', every => '1 minute')")
