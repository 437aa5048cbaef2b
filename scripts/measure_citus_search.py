"""rag.search p50 on a distributed pipeline next to a plain one over the same rows
(docs/scale-out.md). Expects pipelines 'plain' and 'dist' as tests/integration/test_citus.py
builds them; the queries are the test's.

    python scripts/measure_citus_search.py postgresql://postgres@127.0.0.1:PORT/pgask_citus
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

QUERIES = ["vacuum checkpoint wal", "cosine vector embedding model", "replica lag of a query",
           "btree index planner", "training batch gradient"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True, prepare_threshold=None) as conn:
        search = "SELECT * FROM rag.search(%s, 5, NULL, %s, %s)"
        for query in QUERIES:  # warm: model loaded, query vectors cached
            for pipeline in ("plain", "dist"):
                conn.execute(search, (query, "hybrid", pipeline)).fetchall()
        for mode in ("vector", "keyword", "hybrid"):
            p50 = {}
            for pipeline in ("plain", "dist"):
                times = []
                for _ in range(args.repeat):
                    for query in QUERIES:
                        started = time.perf_counter()
                        conn.execute(search, (query, mode, pipeline)).fetchall()
                        times.append((time.perf_counter() - started) * 1000)
                p50[pipeline] = statistics.median(times)
            print(f"{mode}: plain p50 {p50['plain']:.1f} ms, distributed p50 "
                  f"{p50['dist']:.1f} ms ({args.repeat * len(QUERIES)} searches each)")


if __name__ == "__main__":
    main()
