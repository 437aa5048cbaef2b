"""`pgask worker` outlives its connection: after its backend is terminated or the server
restarts, the same process connects again and embeds what was written meanwhile, and SIGTERM
still stops it (with exit code 0), also while it waits to reconnect. Errors that are not a lost
connection still stop it with their message."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest
from commands import pgask_process
from fix_cluster import Cluster

from pgask.install import install
from pgask.worker import Backoff, StopFlag, _reconnect, connection_lost

# Generous: each wait ends as soon as its condition holds; the bound only keeps a broken
# worker from hanging the suite.
WAIT_SECONDS = 90


class Worker:
    """A `pgask worker` subprocess whose stdout is read as it comes (it flushes each line)."""

    def __init__(self, database_url: str) -> None:
        self.process = pgask_process("worker", "--idle-seconds", "0.2",
                                     database_url=database_url)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, condition, what: str) -> None:
        """Waits for `condition()` while the worker keeps running: a worker that exits fails
        the test at once, with what it printed."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}) while waiting for "
                            f"{what}\nstdout:\n{self.output()}\nstderr:\n"
                            f"{self.process.stderr.read()}")
            assert time.monotonic() < deadline, f"no {what} after {WAIT_SECONDS} s:\n" \
                + self.output()
            time.sleep(0.1)

    def wait_for_line(self, text: str) -> None:
        self.wait_until(lambda: any(text in line for line in self.lines), f"line {text!r}")

    def stop(self) -> tuple[int, str]:
        """SIGTERM; returns the exit code and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WAIT_SECONDS)
        self._reader.join(10)
        return code, self.process.stderr.read()


def make_tickets(conn: psycopg.Connection, rows: range) -> None:
    """A source table with an async pipeline (writes only queue; the worker embeds)."""
    conn.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)")
    add_tickets(conn, rows)
    conn.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', mode => 'async')")


def add_tickets(conn: psycopg.Connection, rows: range) -> None:
    conn.execute("INSERT INTO tickets SELECT g, 'Ticket ' || g || ': the disk on db' || g"
                 " || ' is full' FROM generate_series(%s::int, %s::int) AS g",
                 (rows.start, rows.stop - 1))


def all_embedded(url: str, rows: range):
    """A condition: nothing of the pipeline is pending or leased and every row has chunks.
    Connects anew each time: a connection made before a restart would be gone."""
    def check() -> bool:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                (left,) = conn.execute("SELECT pending + leased FROM rag.pipeline_status"
                                       " WHERE pipeline = 'tickets'").fetchone()
                ids = {int(r[0]) for r in conn.execute(
                    "SELECT DISTINCT document_id FROM rag.tickets_chunks")}
        except psycopg.OperationalError:
            return False  # the server is still starting
        return left == 0 and set(rows) <= ids
    return check


def worker_backend(conn: psycopg.Connection) -> int:
    (pid,) = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND query LIKE 'CALL rag.process_queue%'").fetchone()
    return pid


def test_worker_reconnects_after_its_backend_is_terminated(db, db_url):
    make_tickets(db, range(1, 4))
    worker = Worker(db_url)
    try:
        worker.wait_until(all_embedded(db_url, range(1, 4)), "first rows embedded")
        first_backend = worker_backend(db)
        db.execute("SELECT pg_terminate_backend(%s)", (first_backend,))
        add_tickets(db, range(4, 8))
        worker.wait_until(all_embedded(db_url, range(1, 8)), "rows written after the kill")
        assert worker_backend(db) != first_backend
    finally:
        code, err = worker.stop()
    assert code == 0, err
    assert "Traceback" not in err
    out = worker.output()
    assert "lost the connection (" in out and "; reconnecting" in out
    assert "reconnected after 1 attempt" in out
    assert out.endswith("worker stopped: 7 rows processed"), out


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, stopped and started at will (the shared one serves the
    other tests' connections)."""
    cluster = Cluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_worker_waits_out_a_server_restart(own_server):
    url = own_server.create_database("restarts")
    with psycopg.connect(url, autocommit=True) as conn:
        install(conn)
        make_tickets(conn, range(1, 4))
    worker = Worker(url)
    try:
        worker.wait_until(all_embedded(url, range(1, 4)), "first rows embedded")
        own_server.stop()
        worker.wait_for_line("reconnect attempt 2 failed")  # it keeps trying, one line each
        own_server.start()
        worker.wait_for_line("reconnected after")
        with psycopg.connect(url, autocommit=True) as conn:
            add_tickets(conn, range(4, 8))
        worker.wait_until(all_embedded(url, range(1, 8)), "rows written after the restart")
        # SIGTERM while it waits to reconnect: it stops at once, not after its backoff.
        own_server.stop()
        worker.wait_for_line("reconnect attempt 1 failed")
    finally:
        code, err = worker.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert worker.output().endswith("worker stopped: 7 rows processed"), worker.output()


def test_a_privilege_error_still_stops_the_worker(db, postgresql, roles):
    role = roles.make("worker", "ALTER ROLE {role} LOGIN", "GRANT USAGE ON SCHEMA rag TO {role}")
    info = postgresql.info
    worker = pgask_process("worker", database_url=f"postgresql://{role}@{info.host}:"
                                                  f"{info.port}/{info.dbname}")
    out, err = worker.communicate(timeout=WAIT_SECONDS)
    assert worker.returncode == 1, (out, err)
    assert err.startswith(f"pgask worker: rag.process_queue: role {role} may not process "
                          "the queue"), err
    assert "Traceback" not in err and "reconnect" not in out


def test_stop_ends_a_reconnection_backoff_promptly():
    """A worker waiting 60 s to reconnect stops within a step of SIGTERM (the flag)."""
    stop = StopFlag()
    attempts = []

    def refused() -> psycopg.Connection:
        attempts.append(time.monotonic())
        raise psycopg.OperationalError("connection refused")

    threading.Timer(0.3, lambda: setattr(stop, "stopped", True)).start()
    started = time.monotonic()
    assert _reconnect(refused, stop, lambda message: None, Backoff(first=60.0)) is None
    assert len(attempts) == 1 and time.monotonic() - started < 10


def test_what_counts_as_a_lost_connection():
    class Wrapped(Exception):
        pass

    refused = psycopg.OperationalError("connection failed: Connection refused")
    wrapped = Wrapped("cannot connect")
    wrapped.__cause__ = refused
    assert connection_lost(psycopg.errors.AdminShutdown("terminating connection"))
    assert connection_lost(refused) and connection_lost(wrapped)
    assert not connection_lost(psycopg.errors.InsufficientPrivilege("may not"))
    assert not connection_lost(psycopg.errors.ActiveSqlTransaction("in a transaction"))
    assert not connection_lost(IndexError("not a database error"))


def test_backoff_doubles_from_half_a_second_to_thirty_with_jitter():
    backoff = Backoff()
    for attempt, full in ((1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (1000, 30.0)):
        for _ in range(20):
            assert full / 2 <= backoff.delay(attempt) <= full
