"""Bulk load: COPY of short rows into a table with an async pipeline vs the same COPY into an
identical table without one."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

import psycopg

from pgask_measure.bench.report import Figure, round_pairs, size_label

COPY_ROWS = 100_000
# Rounds per side. Each round loads both tables once, into empty tables made for it.
COPY_ROUNDS = 5
PIPED, PLAIN, PIPELINE = "copy_piped", "copy_plain", "copied"

_HOSTS = ("db", "web", "cache", "queue", "batch", "mail", "proxy", "search")
_FAULTS = ("disk is full", "load is high", "backup failed", "clock drifts", "swap is used")


def copy_rows(n: int) -> list[tuple[int, str]]:
    """n rows (id, body) with bodies of about 60 characters, the same on every call."""
    return [(i, f"Ticket {i:06d}: the {_FAULTS[i % 5]} on {_HOSTS[i % 8]}-{i % 97:02d}, "
                f"reported at {i % 24:02d}:{i % 60:02d}")
            for i in range(n)]


def copy_text(rows: Iterable[tuple[int, str]]) -> bytes:
    """The rows in COPY's text format (tab-separated, one line per row), escaped."""
    def field(value: object) -> str:
        return (str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))

    return "".join("\t".join(map(field, row)) + "\n" for row in rows).encode()


def _fresh_tables(conn: psycopg.Connection) -> None:
    """Both tables empty and new, the pipeline new with nothing pending: dropping it deletes
    its rows in rag.inbox, and the VACUUM leaves the inbox as every round found it."""
    if conn.execute("SELECT 1 FROM rag.pipelines WHERE name = %s", (PIPELINE,)).fetchone():
        conn.execute("SELECT rag.drop_pipeline(%s)", (PIPELINE,))
    for table in (PIPED, PLAIN):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline(%s, %s, 'body')", (PIPELINE, PIPED))
    conn.execute("VACUUM rag.inbox")


def _copy_ms(conn: psycopg.Connection, table: str, data: bytes) -> float:
    """Milliseconds for one autocommit COPY (the pipeline's statement trigger and the commit
    included); the client sends the same pre-built buffer for either table."""
    began = time.perf_counter()
    with conn.cursor().copy(f"COPY {table} (id, body) FROM STDIN") as copy:
        copy.write(data)
    return (time.perf_counter() - began) * 1000


def _check_round(conn: psycopg.Connection, rows: int) -> None:
    """Both tables loaded, and the pipeline queued every row (nothing processed it)."""
    counts = conn.execute(
        f"SELECT (SELECT count(*) FROM {PIPED}), (SELECT count(*) FROM {PLAIN}),"
        " (SELECT coalesce(sum(cardinality(i.document_ids)), 0) FROM rag.inbox AS i"
        " WHERE i.pipeline = %s)", (PIPELINE,)).fetchone()
    if counts != (rows, rows, rows):
        raise RuntimeError(f"COPY round: expected {rows} rows in {PIPED}, {PLAIN} and the "
                           f"inbox, found {counts}")


def bench_copy(conn: psycopg.Connection, rows: int = COPY_ROWS,
               rounds: int = COPY_ROUNDS) -> Figure:
    """The bulk-load figure: median milliseconds of each side over alternating rounds. The
    pipeline and both tables are dropped and recreated before each round (not timed), and
    the queue is never processed: the worker's cost is not the writer's."""
    loaded = copy_rows(rows)
    body = round(statistics.mean(len(b) for _, b in loaded))
    data = copy_text(loaded)
    piped: list[float] = []
    plain: list[float] = []
    for round_ in range(rounds):
        _fresh_tables(conn)
        # Which table loads first alternates too: pipeline/plain, then plain/pipeline.
        order = (PIPED, PLAIN) if round_ % 2 == 0 else (PLAIN, PIPED)
        for table in order:
            (piped if table == PIPED else plain).append(_copy_ms(conn, table, data))
        _check_round(conn, rows)
    conn.execute("SELECT rag.drop_pipeline(%s)", (PIPELINE,))
    note = (f"COPY of {rows:,} rows ({body}-character bodies on average) into an "
            f"empty table, median of {rounds} alternating rounds (pipeline/plain ms: "
            f"{round_pairs(piped, plain, 0)}); the statement trigger appends one rag.inbox "
            "row holding every key (async mode), queue not processed")
    return Figure(f"COPY {size_label(rows)} rows (async pipeline)", statistics.median(piped), "ms",
                  "same COPY, no pipeline", statistics.median(plain), note)
