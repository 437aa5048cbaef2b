"""Chunk stores of real sentence embeddings of the manual (search latency and recall on real
embeddings); the real-text stores of scale mode are in scale.py."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg

from pgask_measure.bench.common import MANUAL, K, store_of
from pgask_measure.bench.report import Figure, size_label
from pgask_measure.bench.search import recall_figures, search_figures, search_latencies, uses_index


def create_store(conn: psycopg.Connection, pipeline: str) -> str:
    """A pipeline over an empty table, so rag.search works on it; returns its chunk table,
    which the caller fills directly."""
    conn.execute(f"CREATE TABLE {pipeline}_docs (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline(%s, %s, 'body')", (pipeline, f"{pipeline}_docs"))
    return store_of(conn, pipeline)


def _copy_rows(url: str, store: str, batches: Iterator[tuple[list[str], np.ndarray]]) -> int:
    """Binary COPY of (content, vector) batches into a chunk table; returns the row count."""
    from pgvector.psycopg import register_vector

    n = 0
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            f"COPY rag.{store} (document_id, ordinal, content, token_count, char_start,"
            " char_end, embed_hash, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "int4", "text", "int4", "int4", "int4", "bytea", "vector"])
            for contents, vectors in batches:
                for content, vector in zip(contents, vectors, strict=True):
                    # Ten chunks per pretend document keeps (document_id, ordinal) unique.
                    copy.write_row((str(n // 10), n % 10 + 1, content, 1, 0, 0,
                                    n.to_bytes(8, "big"), vector))
                    n += 1
    return n


def fill_store(url: str, conn: psycopg.Connection, store: str,
               batches: Iterator[tuple[list[str], np.ndarray]]) -> tuple[int, float]:
    """Loads the rows with the HNSW index dropped, then rebuilds it with pgask's own
    definition (a bulk build is much faster than one insert at a time); returns the row count
    and the build's seconds."""
    (indexdef,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'rag'"
                               " AND indexname = %s", (f"{store}_hnsw",)).fetchone()
    conn.execute(f'DROP INDEX rag."{store}_hnsw"')
    rows = _copy_rows(url, store, batches)
    # The graph must fit in maintenance_work_mem or the build slows down many times over.
    conn.execute(f"SET maintenance_work_mem = '{max(256, rows * 4 // 1000)}MB'")
    began = time.perf_counter()
    conn.execute(indexdef)
    build_seconds = time.perf_counter() - began
    conn.execute("RESET maintenance_work_mem")
    conn.execute(f"VACUUM ANALYZE rag.{store}")
    return rows, build_seconds


def manual_sentences(n: int, seed: int = 0) -> list[str]:
    """n distinct sentences of 5 to 60 words, sampled from every page of the manual."""
    import random

    from pgask.loaders import load_file
    from pgask.text import split_sentences

    seen: dict[str, None] = {}
    for path in sorted(MANUAL.glob("*.html")):
        content = load_file(path).content
        for start, end in split_sentences(content):
            sentence = " ".join(content[start:end].split())
            if 5 <= len(sentence.split()) <= 60:
                seen.setdefault(sentence)
    sentences = list(seen)
    return random.Random(seed).sample(sentences, min(n, len(sentences)))


def embedded_batches(texts: Sequence[str], batch: int = 512
                     ) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, embeddings) batches from the model in this process."""
    from pgask.embedders.local import get_local_embedder

    embedder = get_local_embedder()
    for start in range(0, len(texts), batch):
        part = list(texts[start:start + batch])
        yield part, embedder.embed(part)


def bench_sentences(url: str, conn: psycopg.Connection, n: int, texts: Sequence[str],
                    literals: Sequence[str]) -> tuple[list[Figure], list[Figure]]:
    """Search latency (query texts new, then cached) and recall on real embeddings: n
    sentences of the manual, the questions as queries."""
    sentences = manual_sentences(n)
    label = size_label(len(sentences))
    pipeline = f"sentences_{label.replace('.', '_').lower()}"
    store = create_store(conn, pipeline)
    began = time.perf_counter()
    rows, build_seconds = fill_store(url, conn, store, embedded_batches(sentences))
    print(f"  {label} manual sentences embedded and loaded in "
          f"{time.perf_counter() - began:.0f} s (HNSW build {build_seconds:.0f} s)", flush=True)
    times = search_latencies(url, pipeline, texts)
    note = (f"{rows:,} distinct manual sentences embedded by the local model, HNSW m=16 "
            f"ef_construction=64 (built in {build_seconds:.0f} s); {len(texts)} distinct "
            f"question texts, k={K}")
    if not uses_index(conn, pipeline):
        note += "; at this size the planner prefers a sequential scan to the index"
    return search_figures(f"{label} sentences", times, note), recall_figures(
        url, pipeline, f"{label} manual sentences", literals,
        f"real embeddings of {rows:,} distinct sentences sampled from the whole manual, the "
        "question texts' embeddings as queries")
