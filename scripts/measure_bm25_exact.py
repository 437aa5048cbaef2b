"""What counting BM25 statistics at query time costs (docs/scale-out.md, Citus section).

A distributed chunk table has no trigger-kept statistics: rag._bm25_idf_exact counts df, N
and avgdl from the table on every keyword search. This fills the documents pipeline's chunk
table with N chunks of SciFact abstracts (each copy varied by a suffix, random vectors: only
the keyword side is measured) and times, per SciFact query, the trigger-kept lookup
(rag._bm25_idf), the exact count (rag._bm25_idf_exact) and a whole keyword rag.search.

    python scripts/measure_bm25_exact.py postgresql://postgres@127.0.0.1:5432/db \
        --corpus ../shared/data/scifact --chunks 10000 50000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import psycopg

STORE = "documents_chunks_1"


def fill(conn: psycopg.Connection, texts: list[str], n: int) -> None:
    # Only the keyword side is measured: no HNSW upkeep for the random vectors.
    conn.execute(f"DROP INDEX IF EXISTS rag.{STORE}_hnsw")
    conn.execute(f"TRUNCATE rag.{STORE}")
    conn.execute("DELETE FROM rag.bm25_terms WHERE store = %s", (STORE,))
    conn.execute("UPDATE rag.bm25_stats SET chunks = 0, total_length = 0 WHERE store = %s",
                 (STORE,))
    rng = np.random.default_rng(1)
    with conn.cursor() as cur, cur.copy(
            f"COPY rag.{STORE} (document_id, ordinal, content, token_count, embed_hash,"
            " char_start, char_end, embedding) FROM STDIN") as copy:
        for i in range(n):
            text = f"{texts[i % len(texts)]} copy{i // len(texts)}"
            vector = "[" + ",".join(f"{x:.3f}" for x in rng.normal(size=384)) + "]"
            copy.write_row((str(i), 0, text, 200, b"x", 0, len(text), vector))
    conn.execute(f"ANALYZE rag.{STORE}")


def p50_ms(conn: psycopg.Connection, sql: str, args_list: list[tuple]) -> float:
    times = []
    for args in args_list:
        started = time.perf_counter()
        conn.execute(sql, args).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10000])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in
             (args.corpus / "corpus.jsonl").read_text().splitlines()]
    questions = [json.loads(line)["text"] for line in
                 (args.corpus / "queries.jsonl").read_text().splitlines()][:args.queries]
    with psycopg.connect(args.dsn, autocommit=True, prepare_threshold=None) as conn:
        prepared = []
        for q in questions:
            (lexemes,) = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s))",
                                      (q,)).fetchone()
            query = " | ".join("'" + x.replace("'", "''") + "'" for x in lexemes)
            prepared.append((lexemes, query))
        for n in args.chunks:
            fill(conn, texts, n)
            kept = p50_ms(conn, "SELECT * FROM rag._bm25_idf(%s, %s)",
                          [(STORE, lexemes) for lexemes, _ in prepared])
            exact = p50_ms(conn, "SELECT * FROM rag._bm25_idf_exact(%s, %s, %s::tsquery)",
                           [(STORE, lexemes, query) for lexemes, query in prepared])
            search = p50_ms(conn, "SELECT * FROM rag.search(%s, 10, mode => 'keyword')",
                            [(q,) for q in questions])
            print(f"{n} chunks, {len(questions)} SciFact queries, p50: trigger-kept stats "
                  f"{kept:.2f} ms, exact count {exact:.2f} ms, keyword rag.search {search:.2f} ms")


if __name__ == "__main__":
    main()
