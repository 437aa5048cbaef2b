"""`pgask worker` and `pgask backfill`: drive rag.process_queue from outside the database.

The worker loops on CALL rag.process_queue and, when nothing is due, polls again after
idle_seconds. It does not LISTEN: a NOTIFY sent by a capture trigger in the user's transaction
makes PREPARE TRANSACTION fail, so the triggers are not to send one. Several workers can run at
once (rows are leased with SKIP LOCKED), as separate processes or as `--concurrency N`
connections of one process (run_fleet), so N batches, and N provider requests, are in flight
at once. SIGTERM and SIGINT let the current calls finish, then the worker exits.

A lost connection (the server restarted, the backend terminated, the network dropped) does not
stop the worker: it reconnects, waiting 0.5 s after the first failed attempt and twice as long
after each further one, up to 30 s, each wait scaled by a random factor in [0.5, 1] so that a
fleet of workers does not reconnect in lockstep. Calling rag.process_queue again is safe: rows
are leased, so a batch cut off by the loss is either committed or claimed again once its lease
ends. Any other error (a missing privilege, say) stops the worker with its message. A failed
attempt to connect again is retried whatever the server said, as libpq gives such failures no
SQLSTATE: a refused password or a dropped database shows as one log line per attempt. The
first connection is not retried, so a wrong URL fails at once.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgask.progress import progress_bar

# What is left, as rag.pipeline_status counts it (captured writes not yet moved into the
# queue included); a leased row is still to do.
_REMAINING = """
SELECT coalesce(sum(pending + leased), 0)::bigint AS pending,
       coalesce(sum(failed), 0)::bigint AS failed
FROM rag.pipeline_status WHERE %(pipeline)s::text IS NULL OR pipeline = %(pipeline)s
"""

# Sleeps are cut in steps this long, so SIGTERM stops an idle or reconnecting worker promptly.
_STEP_SECONDS = 0.1

# SQLSTATEs that say the connection is gone, or the server cannot take one yet: class 08
# (connection exception) and admin_shutdown, crash_shutdown, cannot_connect_now.
_CONNECTION_STATES = ("57P01", "57P02", "57P03")


def _say(message: str) -> None:
    print(message, flush=True)  # a worker's log is read live (docker logs, journald)


@dataclass
class StopFlag:
    stopped: bool = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, signum, frame) -> None:
        self.stopped = True

    def sleep(self, seconds: float) -> bool:
        """Sleeps up to `seconds`, returning early (True) once stopped."""
        deadline = time.monotonic() + seconds
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(_STEP_SECONDS, left))
        return self.stopped


@dataclass
class Backoff:
    """Waits between reconnection attempts: `first` seconds, doubling up to `cap`, each
    scaled by a random factor in [0.5, 1] (jitter)."""
    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1 for the first)."""
        full = min(self.cap, self.first * 2 ** min(attempt - 1, 32))
        return full * random.uniform(0.5, 1.0)


def process_once(conn: psycopg.Connection, pipeline: str | None, batch_size: int,
                 max_seconds: float, lease_seconds: float) -> int:
    (processed,) = conn.execute(
        "CALL rag.process_queue(%s, %s, %s, %s, NULL)",
        (pipeline, batch_size, max_seconds, lease_seconds)).fetchone()
    return processed or 0


def _driver_error(exc: BaseException) -> psycopg.Error | None:
    """The psycopg error behind `exc`: itself, or the one a caller wrapped (cli's CliError
    keeps it as __cause__)."""
    while exc is not None and not isinstance(exc, psycopg.Error):
        exc = exc.__cause__
    return exc


def connection_lost(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    """Whether `exc` means the connection (or the server) went away, so that connecting
    again is the cure, rather than an error of the work itself."""
    error = _driver_error(exc)
    if error is None:
        return False
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = error.sqlstate or ""
    if state.startswith("08") or state in _CONNECTION_STATES:
        return True
    # A connection attempt the server never answered (refused, reset) has no SQLSTATE.
    return isinstance(error, psycopg.OperationalError) and not state


def _first_line(exc: BaseException) -> str:
    error = _driver_error(exc) or exc
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _reconnect(connect: Callable[[], psycopg.Connection], stop: StopFlag, log,
               backoff: Backoff) -> psycopg.Connection | None:
    """Connects again, backing off between failed attempts and logging each; None once
    stopped. An exception that is not a failure to connect is raised."""
    started = time.monotonic()
    attempt = 0
    while not stop.stopped:
        attempt += 1
        try:
            conn = connect()
        except Exception as exc:
            if not connection_lost(exc):
                raise
            wait = backoff.delay(attempt)
            log(f"reconnect attempt {attempt} failed ({_first_line(exc)}); "
                f"next in {wait:.1f} s")
            stop.sleep(wait)
            continue
        log(f"reconnected after {attempt} attempt{'s' if attempt > 1 else ''} "
            f"({time.monotonic() - started:.1f} s); processing again")
        return conn
    return None


def run_worker(connect: Callable[[], psycopg.Connection], *, pipeline: str | None,
               batch_size: int, idle_seconds: float, lease_seconds: float, stop: StopFlag,
               exit_when_idle: bool = False, log=_say, backoff: Backoff | None = None) -> int:
    """Processes until stopped (or, with exit_when_idle, until nothing is due), on a
    connection from `connect`, and on a new one whenever it is lost. The first connection is
    not retried: failing at once says the URL or password is wrong. Returns the rows
    processed."""
    backoff = backoff or Backoff()
    conn = connect()
    total = 0
    try:
        while not stop.stopped:
            try:
                processed = process_once(conn, pipeline, batch_size, 10.0, lease_seconds)
            except psycopg.Error as exc:
                if not connection_lost(exc, conn):
                    raise
                log(f"lost the connection ({_first_line(exc)}); reconnecting")
                conn.close()
                conn = _reconnect(connect, stop, log, backoff)
                if conn is None:
                    break
                continue
            total += processed
            if processed:
                log(f"processed {processed} rows ({total} since start)")
                continue
            if exit_when_idle:
                break
            stop.sleep(idle_seconds)  # nothing due: poll again in a moment
    finally:
        if conn is not None:
            conn.close()
    return total


def run_fleet(connect: Callable[[], psycopg.Connection], concurrency: int, *,
              pipeline: str | None, batch_size: int, idle_seconds: float,
              lease_seconds: float, stop: StopFlag, exit_when_idle: bool = False,
              log=_say) -> int:
    """run_worker on `concurrency` connections at once, one thread each: while one waits for
    its provider (or its backend runs the local model), the others claim and embed their own
    batches. The threads only wait on I/O (the work runs in the database backends), so
    Python's GIL does not serialise them. No double work: each batch is leased with
    FOR UPDATE SKIP LOCKED, as between separate worker processes. Each thread reconnects on
    its own after a lost connection. An error in one thread stops the others after their
    current call and is raised here."""
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    options = {"pipeline": pipeline, "batch_size": batch_size, "idle_seconds": idle_seconds,
               "lease_seconds": lease_seconds, "stop": stop, "exit_when_idle": exit_when_idle}
    if concurrency == 1:
        return run_worker(connect, log=log, **options)
    totals = [0] * concurrency
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(slot: int) -> None:
        def tagged(message: str) -> None:
            with lock:
                log(f"[{slot + 1}/{concurrency}] {message}")
        try:
            totals[slot] = run_worker(connect, log=tagged, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            with lock:
                errors.append(exc)
            stop.stopped = True

    threads = [threading.Thread(target=one, args=(i,), name=f"pgask-worker-{i + 1}",
                                daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # join with a timeout keeps the main thread responsive to SIGTERM/SIGINT.
        while thread.is_alive():
            thread.join(0.5)
    if errors:
        raise errors[0]
    return sum(totals)


def backfill(conn: psycopg.Connection, pipeline: str, batch_size: int, lease_seconds: float,
             progress: bool = True) -> tuple[int, int]:
    """Works through everything queued for `pipeline`, with a progress bar and ETA.
    Resumable: the queue is the state, so an interrupted run just continues next time."""
    def remaining():
        return conn.execute(_REMAINING, {"pipeline": pipeline}).fetchone()

    # Captured writes and requests to check every row become jobs first, so the bar's total
    # counts rows (a request counts as one until then).
    with conn.transaction():
        conn.execute("SELECT rag._drain_inbox(%s, 100000)", (pipeline,))
    pending, failed = remaining()
    bar = progress_bar(pending, f"backfill {pipeline}", "row", progress)
    done = 0
    while True:
        processed = process_once(conn, pipeline, batch_size, 5.0, lease_seconds)
        done += processed
        bar.update(processed)
        pending, failed = remaining()
        bar.set_postfix(failed=failed)
        if pending == 0:
            break
        if processed == 0:
            time.sleep(1.0)  # rows are backing off after failures, or leased by others
    bar.close()
    return done, failed
