"""Answer latency (rag_answer vs retrieval alone) and its phases."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import psycopg

from pgask_measure.bench.common import connect, timed_ms, warm_backend
from pgask_measure.bench.report import Figure, latency_figures


def load_documents(conn: psycopg.Connection, pages: list) -> None:
    """The pages into rag.documents (sync pipeline: embedded by the INSERTs), for rag.answer."""
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO rag.documents (source, title, content) VALUES (%s, %s, %s)",
                        [(p.source, p.title, p.content) for p in pages])


def _retrieved_sentences(conn: psycopg.Connection, result: dict) -> int:
    """How many sentences the chunks an answer retrieved hold (what its extractive step
    scores, before dropping very short and repeated ones)."""
    from pgask.text import split_sentences

    ids = [r["chunk_id"] for r in result["retrieved"]]
    rows = conn.execute("SELECT content FROM rag.documents_chunks WHERE id = ANY(%s)", (ids,))
    return sum(len(split_sentences(content)) for (content,) in rows)


def bench_answer(url: str, conn: psycopg.Connection, pages: list, asked: Sequence[str]
                 ) -> list[Figure]:
    """rag_answer end to end in one connection; its phases on the same questions in another,
    so every question is new to each backend's query caches."""
    load_documents(conn, pages)
    total, embed, search, step, modes, sentences = [], [], [], [], [], []
    with connect(url) as whole, connect(url) as parts:
        for conn in (whole, parts):
            warm_backend(conn)
            conn.execute("SELECT rag_answer('warm up')")
        for q in asked:
            total.append(timed_ms(whole, "SELECT rag_answer(%s)", (q,)))
            embed.append(timed_ms(parts, "SELECT rag.embed(%s, 'local')", (q,)))
            search.append(timed_ms(parts, "SELECT * FROM rag.search(%s, 5)", (q,)))
            began = time.perf_counter()
            (result,) = parts.execute("SELECT rag.answer(%s, 5)", (q,)).fetchone()
            step.append((time.perf_counter() - began) * 1000 - search[-1])
            modes.append(result["mode"])
            sentences.append(_retrieved_sentences(parts, result))
    retrieval = [e + s for e, s in zip(embed, search, strict=True)]
    whole_p50 = statistics.median(total)
    note = (f"{len(asked)} questions about the ingested pages, each new to its connection; "
            f"{modes.count('extractive')} answered, {modes.count('no_answer')} 'I don't know'")
    share = "rag_answer p50, the whole"
    return latency_figures("answer (rag_answer)", total, "embed + search only", retrieval,
                           note) + [
        Figure("answer phase: embed p50", statistics.median(embed), "ms", share, whole_p50,
               "rag.embed(q, 'local'), the query embedding rag.search makes"),
        Figure("answer phase: search p50", statistics.median(search), "ms", share, whole_p50,
               "rag.search(q, 5) with the query embedding cached"),
        Figure("answer phase: extractive step p50", statistics.median(step), "ms", share,
               whole_p50, "rag.answer(q, 5) with the embedding cached, minus search; it scores "
               "the sentences of the retrieved chunks (median "
               f"{statistics.median(sentences):.0f} per question) with the vectors the worker "
               "stored with each chunk"),
    ]
