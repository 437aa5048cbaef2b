"""What an embedder outage adds to a search: rag.search's latency by keyword, hybrid with the
provider up, and hybrid degraded to keyword with the circuit breaker open, interleaved over
the same connection, plus the one query that opens the breaker (issue 33).

The provider is the loopback server (tests/openai_server.py: the local model over HTTP), told
to answer HTTP 503 to every request for the outage. Every query text is new, so no query
vector comes from the backend's cache.

    DATABASE_URL=postgresql://... .venv/bin/python scripts/measure_degraded_search.py --queries 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fix_openai import EmbeddingServer, server_process  # noqa: E402

WORDS = ("disk wal index vacuum replica lag query plan lock checkpoint backup restore "
         "partition tuple page buffer cache autovacuum bloat sequence trigger").split()


FAULTS = {"503": {"status": 503}, "timeout": {"delay": 60}}


def queries():
    for n, (a, b, c) in enumerate(itertools.permutations(WORDS, 3)):
        yield f"how do I fix {a} {b} with {c} number {n}"


def timed_ms(conn, sql, params) -> float:
    started = time.perf_counter()
    conn.execute(sql, params).fetchall()
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"p50 {statistics.median(values):7.2f} ms  p95 {p95:7.2f} ms  (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=200, help="per kind")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--fault", choices=FAULTS, default="503",
                        help="the outage: HTTP 503 at once, or no answer (a 60 s delay)")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    search = ("SELECT chunk_id FROM rag.search(%s, 5, mode => %s, pipeline => 'lat_docs')")
    text = iter(queries())
    with server_process("openai_server.py", "embeddings") as port, \
            psycopg.connect(url, autocommit=True) as conn:
        server = EmbeddingServer(port)
        conn.execute("SELECT rag.drop_pipeline('lat_docs') FROM rag.pipelines"
                      " WHERE name = 'lat_docs'")
        conn.execute("DROP TABLE IF EXISTS lat_docs")
        conn.execute("DELETE FROM rag.embedders WHERE name = 'lat_srv'")
        conn.execute("SELECT rag.create_embedder('lat_srv', 'openai', 'all-MiniLM-L6-v2-int8',"
                     " 384, %s)", (server.url,))
        conn.execute("CREATE TABLE lat_docs (id integer PRIMARY KEY, body text)")
        conn.cursor().executemany("INSERT INTO lat_docs VALUES (%s, %s)", [
            (i, " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(40)) + f" doc {i}")
            for i in range(args.rows)])
        conn.execute("SELECT rag.create_pipeline('lat_docs', 'lat_docs', 'body',"
                     " embedder => 'lat_srv')")
        conn.execute("CALL rag.process_queue('lat_docs')")
        for mode in ("keyword", "hybrid", "keyword", "hybrid"):  # warm plans and caches
            timed_ms(conn, search, (next(text), mode))

        up = {"keyword": [], "hybrid": []}
        for _ in range(args.queries):
            for mode in up:
                up[mode].append(timed_ms(conn, search, (next(text), mode)))

        server.fail_next({**FAULTS[args.fault], "times": 10 ** 9})
        requests = server.requests()
        # The queries that pay until the breaker opens (3 failed requests by default).
        opening = []
        while len(opening) < 10 and (not opening or server.requests() - requests
                                     < int(conn.execute(
                                         "SELECT value FROM rag.settings"
                                         " WHERE key = 'query_breaker_failures'").fetchone()[0])):
            opening.append(timed_ms(conn, search, (next(text), "hybrid")))
        opened_after = server.requests() - requests
        down = {"keyword": [], "degraded hybrid": []}
        for _ in range(args.queries):
            down["keyword"].append(timed_ms(conn, search, (next(text), "keyword")))
            down["degraded hybrid"].append(timed_ms(conn, search, (next(text), "hybrid")))
        asked = server.requests() - requests - opened_after
        settings = dict(conn.execute("SELECT key, value FROM rag.settings"
                                     " WHERE key LIKE 'query\\_%'").fetchall())
        server.fail_next()
        conn.execute("SELECT rag.drop_pipeline('lat_docs')")
        conn.execute("DROP TABLE lat_docs")

    print(f"rag.search, k=5, {args.rows} rows, settings {json.dumps(settings)}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("provider up:")
    for mode, values in up.items():
        print(f"  {mode:16} {summary(values)}")
    print(f"provider failing ({args.fault}): the first hybrid queries "
          + ", ".join(f"{ms:.1f}" for ms in opening)
          + f" ms ({opened_after} requests, then the breaker is open)")
    for mode, values in down.items():
        print(f"  {mode:16} {summary(values)}")
    extra = statistics.median(down["degraded hybrid"]) - statistics.median(down["keyword"])
    print(f"  degraded hybrid - keyword, p50: {extra:+.2f} ms; requests sent while open: "
          f"{asked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
