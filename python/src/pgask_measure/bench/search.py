"""Query latency (rag.search vs a hand-written pgvector query) and recall@K of the HNSW
index vs an exact scan."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import psycopg

from pgask_measure.bench.common import (
    DIMENSIONS,
    EF_SEARCHES,
    K,
    connect,
    plan_of,
    timed_ms,
    warm_backend,
)
from pgask_measure.bench.report import Figure, latency_figures, recall_at_k


def floor_query(pipeline: str) -> str:
    """The hand-written query an application runs with a vector it computed itself."""
    return (f"SELECT id, document_id, title, content, metadata,"
            f" 1 - (embedding <=> %(v)s::vector) AS score FROM rag.{pipeline}_chunks"
            f" ORDER BY embedding <=> %(v)s::vector LIMIT {K}")


def search_latencies(url: str, pipeline: str, texts: Sequence[str]) -> dict[str, list[float]]:
    """rag.search and the floor query on the same texts, interleaved query by query so both
    see the same machine state. One fresh connection: every text is new to its backend on
    the first pass and cached on the second. The baseline embeds each text here, timed."""
    from pgask.embedders import vector_literal
    from pgask.embedders.local import get_local_embedder

    embedder = get_local_embedder()
    search = f"SELECT * FROM rag.search(%s, {K}, mode => 'vector', pipeline => '{pipeline}')"
    floor = floor_query(pipeline)
    out: dict[str, list[float]] = {"new": [], "client": [], "cached": [], "floor": []}
    literals = []
    with connect(url) as conn:
        warm_backend(conn)
        embedder.embed(["warm up"])
        for text in texts:
            out["new"].append(timed_ms(conn, search, (text,)))
            began = time.perf_counter()
            vector = embedder.embed([text])[0]
            embed_ms = (time.perf_counter() - began) * 1000
            literals.append(vector_literal(vector))
            out["client"].append(embed_ms + timed_ms(conn, floor, {"v": literals[-1]}))
        for text, literal in zip(texts, literals, strict=True):
            out["cached"].append(timed_ms(conn, search, (text,)))
            out["floor"].append(timed_ms(conn, floor, {"v": literal}))
    return out


def uses_index(conn: psycopg.Connection, pipeline: str) -> bool:
    """Whether the planner takes the HNSW index for a k-nearest query on this pipeline."""
    vector = "[" + ",".join(["0.05"] * DIMENSIONS) + "]"
    return "hnsw" in plan_of(conn, floor_query(pipeline), {"v": vector})


def search_figures(label: str, times: dict[str, list[float]], note: str) -> list[Figure]:
    return (
        latency_figures(f"search {label}, new text", times["new"],
                        "same model in client + pgvector query", times["client"], note)
        + latency_figures(f"search {label}, cached text", times["cached"],
                          "pgvector query, vector given", times["floor"]))


def nearest_distances(conn: psycopg.Connection, pipeline: str, literal: str
                      ) -> list[float]:
    return [d for (d,) in conn.execute(
        f"SELECT embedding <=> %(v)s::vector AS d FROM rag.{pipeline}_chunks"
        f" ORDER BY embedding <=> %(v)s::vector LIMIT {K}", {"v": literal})]


def _distances_under(conn: psycopg.Connection, pipeline: str, literals: Sequence[str],
                     settings: dict[str, str], expect: str
                     ) -> tuple[list[list[float]], list[float]]:
    """Each query's K nearest distances and latencies, under planner settings for this
    connection only; checks the plan is the intended one (`expect` in EXPLAIN)."""
    for name, value in settings.items():
        conn.execute(f"SET {name} = {value}")
    try:
        plan = plan_of(conn, f"SELECT 1 FROM rag.{pipeline}_chunks ORDER BY embedding <=>"
                             " %(v)s::vector LIMIT 10", {"v": literals[0]})
        if expect not in plan:
            raise RuntimeError(f"expected {expect!r} in the plan on {pipeline}:\n{plan}")
        results, times = [], []
        for literal in literals:
            began = time.perf_counter()
            results.append(nearest_distances(conn, pipeline, literal))
            times.append((time.perf_counter() - began) * 1000)
        return results, times
    finally:
        for name in settings:
            conn.execute(f"RESET {name}")


def recall_figures(url: str, pipeline: str, label: str, literals: Sequence[str], note: str
                   ) -> list[Figure]:
    """recall@K at each ef_search vs an exact scan; the note gives both latencies."""
    with connect(url) as conn:
        exact, exact_ms = _distances_under(conn, pipeline, literals,
                                           {"enable_indexscan": "off"}, "Seq Scan")
        figures = []
        for ef in EF_SEARCHES:
            found, found_ms = _distances_under(
                conn, pipeline, literals, {"enable_seqscan": "off", "hnsw.ef_search": str(ef)},
                "hnsw")
            recall = statistics.mean(recall_at_k(f, e, K)
                                     for f, e in zip(found, exact, strict=True))
            figures.append(Figure(
                f"recall@{K} {label}, ef_search {ef}", recall, "", "exact scan", 1.0,
                f"{note}; {len(literals)} queries; query p50 {statistics.median(found_ms):.2f}"
                f" ms with the index vs {statistics.median(exact_ms):.2f} ms exact"))
    return figures
