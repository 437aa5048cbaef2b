"""Ingest rate (rag.process_queue vs the model called directly) and write latency (INSERT
with an async pipeline vs without)."""

from __future__ import annotations

import statistics
import time

import psycopg

from pgask_measure.bench.common import chunk_inputs
from pgask_measure.bench.report import Figure, latency_figures

# Ingest is timed this many times on each side, alternating: a single pair of timings moved
# by up to a fifth from one minute to the next on the 2-core machine.
INGEST_ROUNDS = 3


def bench_ingest(conn: psycopg.Connection, texts: list[str]) -> tuple[Figure, list[str]]:
    """The ingest figure, and the chunk texts it embedded (for the LangChain comparison).
    Each round embeds the pages once through a new pipeline and once directly; the figure
    is the median rate of each side. The last round's pipeline, `bench`, stays."""
    from pgask.embedders.local import get_local_embedder

    conn.execute("CREATE TABLE bench_docs (id integer PRIMARY KEY, body text NOT NULL)")
    with conn.cursor().copy("COPY bench_docs (id, body) FROM STDIN") as copy:
        for i, text in enumerate(texts):
            copy.write_row((i, text))
    # Warm the backend's model so neither side pays the load.
    conn.execute("SELECT rag.embed('warm up')")
    inputs = chunk_inputs(texts)
    embedder = get_local_embedder()
    embedder.embed(["warm up"])
    queued: list[float] = []
    direct: list[float] = []
    for round_ in range(INGEST_ROUNDS):
        if round_:
            conn.execute("SELECT rag.drop_pipeline('bench')")
        conn.execute("SELECT rag.create_pipeline('bench', 'bench_docs', 'body')")
        started = time.perf_counter()
        conn.execute("CALL rag.process_queue('bench', batch_size => 16, max_seconds => 3600)")
        seconds = time.perf_counter() - started
        (chunks,) = conn.execute("SELECT count(*) FROM rag.bench_chunks").fetchone()
        queued.append(chunks / seconds)
        started = time.perf_counter()
        embedder.embed(inputs)
        direct.append(len(inputs) / (time.perf_counter() - started))
    # Each round's pair is printed too: the spread between rounds is the figure's noise.
    pairs = ", ".join(f"{q:.1f}/{d:.1f}" for q, d in zip(queued, direct, strict=True))
    figure = Figure("ingest (chunks/s)", statistics.median(queued), "chunks/s",
                    "model called directly", statistics.median(direct),
                    f"{chunks} chunks from {len(texts)} manual pages, median of "
                    f"{INGEST_ROUNDS} alternating rounds (pipeline/direct chunks/s: {pairs}); "
                    "pipeline time includes chunking, queue and writes")
    return figure, inputs


def _insert_ms(conn: psycopg.Connection, table: str, i: int) -> float:
    began = time.perf_counter()
    conn.execute(f"INSERT INTO {table} (id, body) VALUES (%s, %s)",
                 (i, f"Ticket {i}: the disk on host {i} is full"))
    return (time.perf_counter() - began) * 1000


def bench_write_latency(conn: psycopg.Connection, rounds: int) -> list[Figure]:
    for table in ("plain_writes", "piped_writes"):
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline('piped', 'piped_writes', 'body')")
    plain: list[float] = []
    piped: list[float] = []
    # Alternate INSERT by INSERT so both tables see the same machine state (commit flush
    # times here come in bursts that blocks of INSERTs can land on unevenly).
    for i in range(rounds):
        plain.append(_insert_ms(conn, "plain_writes", i))
        piped.append(_insert_ms(conn, "piped_writes", i))
    note = (f"{len(piped)} autocommit single-row INSERTs each; the trigger only appends the "
            "key to rag.inbox (async mode)")
    return latency_figures("INSERT (async pipeline)", piped, "same INSERT, no pipeline", plain,
                           note)
