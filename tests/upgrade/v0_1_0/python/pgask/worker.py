"""`pgask worker` and `pgask backfill`: drive rag.process_queue from outside the database.

The worker loops on CALL rag.process_queue and sleeps on LISTEN rag_queue when there is
nothing to do; several workers can run at once (rows are leased with SKIP LOCKED). SIGTERM
and SIGINT let the current call finish, then the worker exits.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass

import psycopg

_REMAINING = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       min(not_before) FILTER (WHERE status = 'pending') AS next_due
FROM rag.queue WHERE %(pipeline)s::text IS NULL OR pipeline = %(pipeline)s
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


def backfill(conn: psycopg.Connection, pipeline: str, batch_size: int, lease_seconds: float,
             progress: bool = True) -> tuple[int, int]:
    """Works through everything queued for `pipeline`, with a progress bar and ETA.
    Resumable: the queue is the state, so an interrupted run just continues next time."""
    from tqdm import tqdm

    def remaining():
        return conn.execute(_REMAINING, {"pipeline": pipeline}).fetchone()

    pending, failed, _ = remaining()
    bar = tqdm(total=pending, unit="row", desc=f"backfill {pipeline}", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    done = 0
    while True:
        processed = process_once(conn, pipeline, batch_size, 5.0, lease_seconds)
        done += processed
        bar.update(processed)
        pending, failed, next_due = remaining()
        bar.set_postfix(failed=failed)
        if pending == 0:
            break
        if processed == 0:
            time.sleep(1.0)  # rows are backing off after failures, or leased by others
    bar.close()
    return done, failed
