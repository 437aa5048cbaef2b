"""Worker fleets: rows/s embedded by `pgask worker --concurrency N` (run_fleet, the same
code) against a provider that takes a fixed time per request, and with the local model
(every connection's backend runs its own copy), each vs one connection in the same run."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from pgask.worker import StopFlag, run_fleet
from pgask_measure.bench.common import connect
from pgask_measure.bench.report import Figure
from pgask_measure.bench.standin import StandinServer

PROVIDER_LATENCY = 0.2
FLEET_SIZES = (1, 4, 16)
BATCH = 4
# Requests per connection at each size, so every size runs for about the same time.
ROUNDS = 12


def _queued_table(conn: psycopg.Connection, name: str, texts: Sequence[str],
                  embedder: str) -> None:
    conn.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, body text NOT NULL)")
    with conn.cursor().copy(f"COPY {name} (id, body) FROM STDIN") as copy:
        for i, text in enumerate(texts):
            copy.write_row((i, text))
    # An async pipeline over existing rows queues them all; nothing is embedded yet.
    conn.execute("SELECT rag.create_pipeline(%s, %s, 'body', embedder => %s)",
                 (name, name, embedder))


def _warm(embedder: str) -> str:
    """Loads what a backend's first batch would (the chunker's tokenizer, the provider, the
    model), so no rate pays it: that takes seconds on a busy machine."""
    return (f"SELECT rag.embed('warm up', '{embedder}'),"
            " (SELECT count(*) FROM rag.chunk('warm up'))")


def _drain(url: str, pipeline: str, concurrency: int, warm: str | None = None) -> float:
    """Seconds for run_fleet to process the pipeline's whole queue; `warm` is run on each
    connection before the clock starts (loads the model in its backend)."""
    from concurrent.futures import ThreadPoolExecutor

    def warmed(_: int) -> psycopg.Connection:
        conn = connect(url)
        if warm:
            conn.execute(warm)
        return conn

    # In parallel: a backend's first call takes seconds on a busy machine.
    with ThreadPoolExecutor(concurrency) as pool:
        ready = list(pool.map(warmed, range(concurrency)))
    began = time.perf_counter()
    total = run_fleet(ready.pop, concurrency, pipeline=pipeline, batch_size=BATCH,
                      idle_seconds=1.0, lease_seconds=300.0, stop=StopFlag(),
                      exit_when_idle=True, log=lambda message: None)
    seconds = time.perf_counter() - began
    if total == 0:
        raise RuntimeError(f"the fleet on {pipeline} processed nothing")
    return seconds


def _rows(conn: psycopg.Connection, pipeline: str) -> int:
    (n,) = conn.execute(f"SELECT count(DISTINCT document_id) FROM rag.{pipeline}_chunks"
                        ).fetchone()
    return n


def bench_fleet_remote(url: str, conn: psycopg.Connection) -> list[Figure]:
    """1 vs 4 vs 16 connections against the stand-in provider answering after 200 ms."""
    rates: dict[int, float] = {}
    with StandinServer(latency=PROVIDER_LATENCY) as server:
        server.register(conn, "slow_provider")
        for n in FLEET_SIZES:
            rows = n * ROUNDS * BATCH
            name = f"fleet_remote_{n}"
            _queued_table(conn, name, [f"Ticket {i}: the disk on host {i % 97} is full"
                                       for i in range(rows)], "slow_provider")
            seconds = _drain(url, name, n, warm=_warm("slow_provider"))
            rates[n] = _rows(conn, name) / seconds
    figures = []
    for n in FLEET_SIZES[1:]:
        figures.append(Figure(
            f"worker fleet, {n} connections (rows/s)", rates[n], "rows/s", "1 connection",
            rates[1], f"pgask worker --concurrency {n} (run_fleet) vs 1, a loopback provider "
            f"answering every request after {PROVIDER_LATENCY * 1000:.0f} ms, batches of "
            f"{BATCH} rows, {ROUNDS} requests per connection; ideal ratio {n}x"))
    return figures


def bench_fleet_local(url: str, conn: psycopg.Connection, texts: Sequence[str]
                      ) -> list[Figure]:
    """1 vs 2 connections with the local model: each backend embeds with its own copy."""
    import os

    seconds = {}
    for n in (1, 2):
        name = f"fleet_local_{n}"
        _queued_table(conn, name, texts, "local")
        seconds[n] = _drain(url, name, n, warm=_warm("local"))
    rows = _rows(conn, "fleet_local_1")
    return [Figure(
        "worker fleet, local model, 2 connections (rows/s)", rows / seconds[2], "rows/s",
        "1 connection", rows / seconds[1],
        f"{len(texts)} manual pages ({rows} rows) embedded by the model inside each "
        f"connection's backend; {os.cpu_count()} cores; the model uses every core on its own, "
        "so two backends mostly share them")]
