"""rag.search inside PostgreSQL: vector and BM25 candidate lists, fused, optionally reranked
and diversified. Runs as the calling role, so table privileges and row-level security apply
to every query here (see rag._sync_security).

The plpgsql wrapper in sql/retrieval.sql validates arguments (`search_error`) and embeds the
query before calling `search`, so users get errors without Python tracebacks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from pgask.plans import prepared
from pgask.retrieval.filters import FilterError, compile_filter
from pgask.retrieval.fusion import (
    drop_near_duplicates,
    maximal_marginal_relevance,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from pgask.retrieval.options import SearchOptions
from pgask.retrieval.rerank import RerankError, RerankerSpec, reranker_for


@dataclass(frozen=True)
class PipelineView:
    name: str
    source: str
    active_set: int
    language: str
    search_options: dict

    @property
    def view(self) -> str:
        # Pipeline names match ^[a-z_][a-z0-9_]*$ (checked at creation): safe to quote so.
        return f'rag."{self.name}_chunks"'

    @property
    def store(self) -> str:
        return f"{self.name}_chunks_{self.active_set}"


def load_pipeline(plpy, name: str) -> PipelineView:
    rows = plpy.execute(prepared(plpy, (
        "SELECT name, source::text AS source, active_set, language::text AS language,"
        " search_options::text AS search_options FROM rag.pipelines WHERE name = $1"),
        ["text"]), [name])
    row = dict(rows[0])
    row["search_options"] = json.loads(row["search_options"])
    return PipelineView(**row)



def _parse(text: str | None):
    return None if text is None else json.loads(text)


def search_error(plpy, filter_json, options_json, pipeline: str) -> str | None:
    """Why the filter or options cannot be used (None if they can): for the SQL wrapper."""
    try:
        compile_filter(_parse(filter_json))
    except FilterError as exc:
        return f"filter: {exc}"
    defaults = load_pipeline(plpy, pipeline).search_options if pipeline else None
    try:
        options = SearchOptions.resolve(defaults, _parse(options_json))
    except ValueError as exc:
        return f"options: {exc}"
    if options.rerank is not None:
        found = plpy.execute(prepared(plpy, "SELECT 1 FROM rag.rerankers WHERE name = $1",
                                   ["text"]), [options.rerank])
        if not found:
            return (f"options: reranker {options.rerank!r} is not registered "
                    "(see rag.create_reranker)")
    return None


def query_lexemes(plpy, language: str, query: str) -> list[str]:
    rows = plpy.execute(prepared(plpy, "SELECT tsvector_to_array(to_tsvector($1::regconfig, $2))"
                              " AS lexemes", ["text", "text"]), [language, query])
    return list(rows[0]["lexemes"] or [])


def tsquery_any(lexemes: list[str]) -> str:
    """tsquery text matching any of the lexemes, each quoted as tsquery's input wants (\\ and '
    escaped), so no query text is interpreted as tsquery syntax."""
    quoted = ("'" + lex.replace("\\", "\\\\").replace("'", "''") + "'" for lex in lexemes)
    return " | ".join(quoted)


def vector_candidates(plpy, p: PipelineView, vector: str, depth: int, where: str,
                      params: list, types: list[str]) -> list[tuple[int, float]]:
    # relaxed_order iterative scans can return rows slightly out of order: re-sorted here.
    sql = (f"WITH hits AS MATERIALIZED (SELECT c.id, c.embedding <=> $1::vector AS distance"
           f" FROM {p.view} AS c WHERE {where} ORDER BY c.embedding <=> $1::vector LIMIT $2)"
           " SELECT id, 1 - distance AS score FROM hits ORDER BY distance, id")
    rows = plpy.execute(prepared(plpy, sql, ["text", "int", *types]), [vector, depth, *params])
    return [(r["id"], r["score"]) for r in rows]


def keyword_candidates(plpy, p: PipelineView, query: str, depth: int, options: SearchOptions,
                       where: str, params: list, types: list[str]) -> list[tuple[int, float]]:
    """Okapi BM25 over the chunk table's tsvector:
    score = sum over query terms t of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))
    with idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (Lucene's non-negative form). The GIN
    index finds the chunks holding any query term; tf comes from the positions stored in the
    tsvector (ts_filter keeps the query's lexemes only); df, N and avgdl from rag.bm25_stats."""
    lexemes = query_lexemes(plpy, p.language, query)
    if not lexemes:
        return []  # only stop words: nothing for BM25 to match
    sql = (
        "WITH q AS (SELECT lexeme, idf, avgdl FROM rag._bm25_idf($4, $3::text[])),"
        " a AS (SELECT max(avgdl) AS avgdl FROM q)"
        " SELECT c.id, sum(q.idf * m.tf * ($6 + 1)"
        "  / (m.tf + $6 * (1 - $7 + $7 * c.doc_length / a.avgdl))) AS score"
        f" FROM {p.view} AS c CROSS JOIN a"
        " CROSS JOIN LATERAL (SELECT u.lexeme, cardinality(u.positions) AS tf"
        "  FROM unnest(ts_filter(setweight(c.tsv, 'A', $3::text[]), '{a}')) AS u) AS m"
        " JOIN q ON q.lexeme = m.lexeme"
        f" WHERE c.tsv @@ $5::tsquery AND {where}"
        " GROUP BY c.id ORDER BY score DESC, c.id LIMIT $2")
    rows = plpy.execute(
        prepared(plpy, sql, ["text", "int", "text[]", "text", "text", "float8", "float8", *types]),
        [query, depth, lexemes, p.store, tsquery_any(lexemes), options.bm25_k1, options.bm25_b,
         *params])
    return [(r["id"], r["score"]) for r in rows]


def _fetch(plpy, p: PipelineView, ids: list[int], with_vectors: bool) -> dict[int, dict]:
    vector = ", c.embedding::text AS embedding" if with_vectors else ""
    sql = (f"SELECT c.id AS chunk_id, c.document_id, c.title,"
           f" coalesce(c.metadata ->> 'source', $2 || ':' || c.document_id) AS source,"
           f" c.content, c.metadata::text AS metadata{vector}"
           f" FROM {p.view} AS c WHERE c.id = ANY($1)")
    rows = plpy.execute(prepared(plpy, sql, ["bigint[]", "text"]), [ids, p.source])
    return {r["chunk_id"]: dict(r) for r in rows}


def _vectors(rows: list[dict]) -> np.ndarray:
    return np.array([json.loads(r["embedding"]) for r in rows], dtype=np.float32)


def _set_scan_settings(plpy, options: SearchOptions) -> dict:
    """Sets this call's HNSW settings for the transaction; returns the values to restore."""
    rows = plpy.execute(prepared(plpy, (
        "SELECT old.ef, old.it, old.mst,"
        " set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', $2, true),"
        " set_config('hnsw.max_scan_tuples', $3, true)"
        " FROM (SELECT current_setting('hnsw.ef_search', true) AS ef,"
        "  current_setting('hnsw.iterative_scan', true) AS it,"
        "  current_setting('hnsw.max_scan_tuples', true) AS mst OFFSET 0) AS old"),
        ["text", "text", "text"]),
        [str(options.ef_search), "relaxed_order", str(options.max_scan_tuples)])
    return dict(rows[0])


def _restore_scan_settings(plpy, old: dict) -> None:
    plpy.execute(prepared(plpy, (
        "SELECT set_config('hnsw.ef_search', coalesce($1, '40'), true),"
        " set_config('hnsw.iterative_scan', coalesce($2, 'off'), true),"
        " set_config('hnsw.max_scan_tuples', coalesce($3, '20000'), true)"),
        ["text", "text", "text"]), [old["ef"], old["it"], old["mst"]])


def _rerank(plpy, name: str, query: str, rows: list[dict]) -> list[float] | None:
    from pgask.queue import read_secret

    spec_row = plpy.execute(prepared(plpy, (
        "SELECT name, provider, model, base_url, api_key_env, options::text AS options_json"
        " FROM rag.rerankers WHERE name = $1"), ["text"]), [name])
    spec = RerankerSpec(**dict(spec_row[0]))
    try:
        reranker = reranker_for(spec, json.loads(spec.options_json),
                                lambda secret: read_secret(plpy, secret))
        return reranker.scores(query, [r["content"] for r in rows])
    except RerankError as exc:
        # A search still answers when the second stage is down: in first-stage order.
        plpy.warning(f"rag.search: {exc}; results are not reranked")
        return None


# Phases of the last search in this backend, for rag.answer's timings.
last_timings: dict[str, float] = {}


def search(plpy, query: str, query_vector: str | None, k: int, filter_json, mode: str,
           pipeline: str, options_json) -> list[dict]:
    last_timings.clear()
    p = load_pipeline(plpy, pipeline)
    options = SearchOptions.resolve(p.search_options, _parse(options_json))
    compiled = compile_filter(_parse(filter_json), first_param=3)
    # Candidate lists are deeper than k whenever something re-orders them afterwards.
    reorders = (mode == "hybrid" or options.rerank or options.mmr_lambda is not None
                or options.dedupe_threshold is not None)
    depth = k * options.candidates_factor if reorders else k

    vector_hits: list[tuple[int, float]] = []
    keyword_hits: list[tuple[int, float]] = []
    if mode in ("vector", "hybrid") and query_vector is not None:
        old = _set_scan_settings(plpy, options)
        try:
            vector_hits = vector_candidates(plpy, p, query_vector, depth, compiled.sql,
                                            compiled.params, compiled.types)
        finally:
            _restore_scan_settings(plpy, old)
    if mode in ("keyword", "hybrid"):
        keyword_filter = compile_filter(_parse(filter_json), first_param=8)
        keyword_hits = keyword_candidates(plpy, p, query, depth, options, keyword_filter.sql,
                                          keyword_filter.params, keyword_filter.types)

    vector_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(vector_hits)}
    keyword_rank = {cid: (i + 1, s) for i, (cid, s) in enumerate(keyword_hits)}
    weights = [options.vector_weight, options.keyword_weight]
    if mode == "hybrid" and options.fusion == "zscore":
        fused = zscore_fusion([vector_hits, keyword_hits], weights)
    elif mode == "hybrid":
        fused = reciprocal_rank_fusion(
            [[c for c, _ in vector_hits], [c for c, _ in keyword_hits]], weights,
            options.rrf_k)
    else:
        fused = vector_hits if mode == "vector" else keyword_hits
    if not fused:
        return []

    needs_vectors = options.mmr_lambda is not None or options.dedupe_threshold is not None
    found = _fetch(plpy, p, [cid for cid, _ in fused], needs_vectors)
    ranked = [(found[cid], score) for cid, score in fused if cid in found]

    rerank_scores: dict[int, float] = {}
    if options.rerank is not None and ranked:
        head = ranked[:options.rerank_depth]
        started = time.perf_counter()
        scores = _rerank(plpy, options.rerank, query, [row for row, _ in head])
        last_timings["rerank_ms"] = (time.perf_counter() - started) * 1000
        if scores is not None:
            rerank_scores = {row["chunk_id"]: s for (row, _), s in zip(head, scores,
                                                                        strict=True)}
            head = sorted(((row, rerank_scores[row["chunk_id"]]) for row, _ in head),
                          key=lambda pair: -pair[1])
            ranked = head + ranked[options.rerank_depth:]

    if options.dedupe_threshold is not None and ranked:
        keep = set(drop_near_duplicates([row["chunk_id"] for row, _ in ranked],
                                        _vectors([row for row, _ in ranked]),
                                        options.dedupe_threshold))
        ranked = [pair for pair in ranked if pair[0]["chunk_id"] in keep]
    if options.mmr_lambda is not None and ranked:
        order = maximal_marginal_relevance(
            [row["chunk_id"] for row, _ in ranked], [s for _, s in ranked],
            _vectors([row for row, _ in ranked]), options.mmr_lambda, k)
        by_id = {row["chunk_id"]: (row, s) for row, s in ranked}
        ranked = [by_id[cid] for cid in order]

    results = []
    for position, (row, score) in enumerate(ranked[:k], start=1):
        cid = row["chunk_id"]
        results.append({
            "chunk_id": cid, "document_id": row["document_id"], "title": row["title"],
            "source": row["source"], "content": row["content"],
            "metadata": json.loads(row["metadata"]),
            "score": score, "rank": position,
            "vector_rank": vector_rank.get(cid, (None, None))[0],
            "keyword_rank": keyword_rank.get(cid, (None, None))[0],
            "vector_score": vector_rank.get(cid, (None, None))[1],
            "keyword_score": keyword_rank.get(cid, (None, None))[1],
            "rerank_score": rerank_scores.get(cid),
        })
    return results
