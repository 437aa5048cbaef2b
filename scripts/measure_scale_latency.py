"""rag.search's latency on a scale store that `pgask bench --only scale` left in pgask_bench,
again, without rebuilding it (a 1M store takes ten minutes to load and index): hybrid,
vector and keyword p50 / p95 next to raw HNSW with the vector given, for each pass over the
same queries. Each pass runs every query once untimed before timing it (as pgask bench does),
so passes differ only by the machine's run-to-run spread. The exhaustive BM25 baseline is
left out (seconds per query at 1M).

    pgask bench --only scale --sizes 1000000        # builds rag.scale_1m_chunks_1
    python scripts/measure_scale_latency.py postgresql://postgres@127.0.0.1:54329/pgask_bench \\
        scale_1m --passes 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

from pgask_measure.bench.common import connect, manual_pages, store_of  # noqa: E402
from pgask_measure.bench.scale import latencies, scale_queries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn", help="the pgask_bench database")
    parser.add_argument("pipeline", help="a scale pipeline, e.g. scale_1m")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--pages", type=int, default=40,
                        help="manual pages whose titles make questions, as pgask bench's")
    args = parser.parse_args()
    with connect(args.dsn) as conn:
        store = store_of(conn, args.pipeline)
    texts = scale_queries([d.title for d in manual_pages(args.pages)], args.queries)
    for n in range(1, args.passes + 1):
        timed = latencies(args.dsn, args.pipeline, store, texts, exhaustive=False)
        cells = []
        for mode in ("hybrid", "vector", "keyword", "floor"):
            ms = sorted(timed[mode])
            cells.append(f"{mode} {statistics.median(ms):.2f} / {ms[int(0.95 * len(ms))]:.2f}")
        print(f"pass {n} ({len(texts)} queries, p50 / p95 ms; floor = raw HNSW): "
              + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
