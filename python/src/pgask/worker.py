"""`pgask worker` and `pgask backfill`: drive rag.process_queue from outside the database.

The worker loops on CALL rag.process_queue and sleeps on LISTEN rag_queue when there is
nothing to do; several workers can run at once (rows are leased with SKIP LOCKED), as
separate processes or as `--concurrency N` connections of one process (run_fleet), so N
batches, and N provider requests, are in flight at once. SIGTERM and SIGINT let the current
calls finish, then the worker exits.
"""

from __future__ import annotations

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


@dataclass
class StopFlag:
    stopped: bool = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, signum, frame) -> None:
        self.stopped = True


def process_once(conn: psycopg.Connection, pipeline: str | None, batch_size: int,
                 max_seconds: float, lease_seconds: float) -> int:
    (processed,) = conn.execute(
        "CALL rag.process_queue(%s, %s, %s, %s, NULL)",
        (pipeline, batch_size, max_seconds, lease_seconds)).fetchone()
    return processed or 0


def run_worker(conn: psycopg.Connection, *, pipeline: str | None, batch_size: int,
               idle_seconds: float, lease_seconds: float, stop: StopFlag,
               exit_when_idle: bool = False, log=print) -> int:
    """Processes until stopped (or, with exit_when_idle, until nothing is due)."""
    conn.execute("LISTEN rag_queue")
    total = 0
    while not stop.stopped:
        processed = process_once(conn, pipeline, batch_size, 10.0, lease_seconds)
        total += processed
        if processed:
            log(f"processed {processed} rows ({total} since start)")
            continue
        if exit_when_idle:
            break
        # Nothing due: sleep until a trigger notifies, a backoff ends, or idle_seconds pass.
        for _ in conn.notifies(timeout=idle_seconds, stop_after=1):
            pass
    return total


def run_fleet(connect: Callable[[], psycopg.Connection], concurrency: int, *,
              pipeline: str | None, batch_size: int, idle_seconds: float,
              lease_seconds: float, stop: StopFlag, exit_when_idle: bool = False,
              log=print) -> int:
    """run_worker on `concurrency` connections at once, one thread each: while one waits for
    its provider (or its backend runs the local model), the others claim and embed their own
    batches. The threads only wait on I/O (the work runs in the database backends), so
    Python's GIL does not serialise them. No double work: each batch is leased with
    FOR UPDATE SKIP LOCKED, as between separate worker processes. An error in one thread
    stops the others after their current call and is raised here."""
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    if concurrency == 1:
        with connect() as conn:
            return run_worker(conn, pipeline=pipeline, batch_size=batch_size,
                              idle_seconds=idle_seconds, lease_seconds=lease_seconds,
                              stop=stop, exit_when_idle=exit_when_idle, log=log)
    totals = [0] * concurrency
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(slot: int) -> None:
        def tagged(message: str) -> None:
            with lock:
                log(f"[{slot + 1}/{concurrency}] {message}")
        try:
            with connect() as conn:
                totals[slot] = run_worker(
                    conn, pipeline=pipeline, batch_size=batch_size, idle_seconds=idle_seconds,
                    lease_seconds=lease_seconds, stop=stop, exit_when_idle=exit_when_idle,
                    log=tagged)
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
