"""rag.search inside PostgreSQL: vector and BM25 candidate lists, fused, optionally reranked
and diversified. Runs as the calling role, so table privileges and row-level security apply
to every query here (see rag._sync_security), and returns only chunks whose source row
exists and is visible to it (_visible).

The plpgsql wrapper in sql/120_retrieval.sql validates arguments (`search_error`) and embeds the
query before calling `search`, so users get errors without Python tracebacks.
"""

from __future__ import annotations

import math
import time

from pgask import jsonlite, limits, pipelines
from pgask.pipelines import Pipeline as PipelineView  # the one handle (pgask.pipelines)
from pgask.plans import prepared, vector_schema
from pgask.providers.errors import KeyAccessError
from pgask.retrieval import bm25, query_embedding
from pgask.retrieval.filters import MAX_DEPTH, FilterError, compile_filter
from pgask.retrieval.fusion import (
    drop_near_duplicates,
    maximal_marginal_relevance,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from pgask.retrieval.options import SearchOptions
from pgask.retrieval.rerank import RerankError, RerankerSpec, reranker_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:  # loaded only by the options that compare chunk vectors (mmr, dedupe)
    import numpy as np


def _parse(text: str | None):
    try:
        return None if text is None else jsonlite.loads(text)
    except RecursionError:
        raise FilterError("a filter may be nested at most "
                          f"{MAX_DEPTH} deep (rag.settings max_filter_depth)") from None
    except ValueError as exc:
        # PostgreSQL hands over valid JSON, but writes a jsonb number such as 1e5000 with all
        # its digits, and Python reads no integer of more than sys.get_int_max_str_digits()
        # (4300): that ValueError escaped rag._search_error as a traceback, not 22023.
        if "integer string conversion" not in str(exc):
            raise
        import sys

        raise FilterError("a number may have at most "
                          f"{sys.get_int_max_str_digits()} digits") from None


def _compile(plpy, filter_json, first_param: int):
    bounds = limits.read(plpy)
    return compile_filter(_parse(filter_json), first_param, bounds.max_filter_nodes,
                          bounds.max_filter_depth)


def search_error(plpy, filter_json, options_json, pipeline: str) -> str | None:
    """Why the filter or options cannot be used (None if they can): for the SQL wrapper."""
    try:
        _compile(plpy, filter_json, 1)
    except FilterError as exc:
        return f"filter: {exc}"
    defaults = pipelines.load(plpy, pipeline).search_options if pipeline else None
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


def _quoted(lexeme: str) -> str:
    """A lexeme as tsquery's input wants it (\\ and ' escaped), so no query text is
    interpreted as tsquery syntax."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_all(lexemes: list[str]) -> str:
    """tsquery text matching all of the lexemes."""
    return " & ".join(map(_quoted, lexemes))


def pinned(plpy, pipeline: str) -> PipelineView:
    """The pipeline, its active chunk table opened (so locked, ACCESS SHARE) for the rest of
    the transaction. Every query of a search reads that table, not the view: a re-embed's
    switch (rag._switch_set) re-points the view and drops the old table in one transaction,
    and a search that took its candidates from one table and their rows from the other found
    none of them. Now the switch's DROP waits for the searches that hold the old table. A
    search whose snapshot predates a switch that has since dropped the old table reads the
    new one (the set that was being built)."""
    p = pipelines.load(plpy, pipeline)
    for embedding_set in (p.active_set, p.building_set):
        if embedding_set is None:
            continue
        try:
            with plpy.subtransaction():
                plpy.execute(prepared(plpy, f"SELECT FROM {p.table(embedding_set)} LIMIT 0", []))
        except plpy.SPIError as exc:
            if getattr(exc, "sqlstate", None) != "42P01":  # undefined_table: dropped
                raise
            continue
        return p._replace(active_set=embedding_set)
    raise RuntimeError(f"pipeline {pipeline}: its chunk table was dropped during the search")


def _table(p: PipelineView) -> str:
    return p.table(p.active_set)


def vector_candidates(plpy, p: PipelineView, vector: str, depth: int, where: str,
                      params: list, types: list[str]) -> list[tuple[int, float]]:
    # relaxed_order iterative scans can return rows slightly out of order: re-sorted here.
    vs = vector_schema(plpy)
    distance = f"c.embedding OPERATOR({vs}.<=>) $1::{vs}.vector"
    sql = (f"WITH hits AS MATERIALIZED (SELECT c.id, {distance} AS distance"
           f" FROM {_table(p)} AS c WHERE {where} ORDER BY {distance} LIMIT $2)"
           " SELECT id, 1 - distance AS score FROM hits ORDER BY distance, id")
    rows = plpy.execute(prepared(plpy, sql, ["text", "int", *types]), [vector, depth, *params])
    return [(r["id"], r["score"]) for r in rows]


def term_idfs(plpy, p: PipelineView, lexemes: list[str]) -> tuple[dict[str, float], float]:
    """BM25's idf of each query lexeme that occurs in the pipeline's chunks, and their average
    length (rag._bm25_idf: only for a chunk table the caller may read)."""
    rows = plpy.execute(prepared(plpy, "SELECT lexeme, idf, avgdl FROM rag._bm25_idf($1, $2)",
                                 ["text", "text[]"]), [p.store, lexemes])
    return {r["lexeme"]: r["idf"] for r in rows}, (rows[0]["avgdl"] if rows else 1.0)


def keyword_candidates(plpy, p: PipelineView, query: str, depth: int, options: SearchOptions,
                       where: str, params: list, types: list[str]) -> list[tuple[int, float]]:
    """Okapi BM25 over the chunk table's tsvector:
    score = sum over query terms t of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))
    with idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (Lucene's non-negative form). The GIN
    index finds the chunks holding a query term; tf comes from the positions stored in the
    tsvector (ts_filter keeps the query's lexemes only); df, N and avgdl from rag.bm25_stats.
    Pruning (retrieval/bm25.py) keeps common terms from bringing in chunks that cannot reach
    the top `depth`: each statement scores only the chunks holding a set of query terms whose
    bounds can reach a threshold, lowered until depth chunks reach it."""
    lexemes = query_lexemes(plpy, p.language, query)
    if not lexemes:
        return []  # only stop words: nothing for BM25 to match
    idfs, avgdl = term_idfs(plpy, p, lexemes)
    if not idfs:
        return []  # no query term occurs in any chunk
    terms, weights = list(idfs), [idfs[t] for t in idfs]
    # Each chunk's score is summed over its own lexemes in the tsvector's order, whatever the
    # plan, so a chunk scores the same, to the last bit, in every statement below: the pruned
    # top then equals exhaustive scoring's even where scores tie. Without GROUP BY, a Citus
    # distributed chunk table (rag.distribute_pipeline) lets every shard sort and cut its own
    # rows; the coordinator merges the shards' tops. (Statistics stay global: rag._bm25_idf
    # reads the coordinator's.)
    sql = (
        "SELECT c.id, m.score"
        f" FROM {_table(p)} AS c"
        " CROSS JOIN LATERAL (SELECT sum($4[array_position($3, u.lexeme)]"
        "  * cardinality(u.positions) * ($6 + 1) / (cardinality(u.positions)"
        "  + $6 * (1 - $7 + $7 * c.doc_length / $1))) AS score"
        "  FROM unnest(ts_filter(setweight(c.tsv, 'A', $3::text[]), '{a}')) AS u) AS m"
        f" WHERE c.tsv @@ ANY($5::tsquery[]) AND {where}"
        " ORDER BY m.score DESC, c.id LIMIT $2")
    plan = prepared(plpy, sql, ["float8", "int", "text[]", "float8[]", "text[]", "float8",
                                "float8", *types])

    def scored(clauses: list[list[str]]) -> list[tuple[int, float]]:
        """The top chunks among those holding every term of some clause."""
        rows = plpy.execute(plan, [avgdl, depth, terms, weights,
                                   [tsquery_all(clause) for clause in clauses],
                                   options.bm25_k1, options.bm25_b, *params])
        return [(r["id"], r["score"]) for r in rows]

    return bm25.top_chunks(idfs, options.bm25_k1, depth, scored)


# What rag.answer reads too (run's `places`): where a chunk is in its document, and its
# sentences' vectors for the extractive answerer.
PLACE_COLUMNS = ("ordinal", "char_start", "char_end", "sentence_spans", "sentence_vectors")


def _fetch(plpy, p: PipelineView, ids: list[int], with_vectors: bool,
           places: bool = False) -> dict[int, dict]:
    vector = ", c.embedding::text AS embedding" if with_vectors else ""
    place = "".join(f", c.{column}" for column in PLACE_COLUMNS) if places else ""
    sql = (f"SELECT c.id AS chunk_id, c.document_id, c.title,"
           f" coalesce(c.metadata ->> 'source', $2 || ':' || c.document_id) AS source,"
           f" c.content, c.metadata::text AS metadata{vector}{place}"
           f" FROM {_table(p)} AS c WHERE c.id = ANY($1)")
    rows = plpy.execute(prepared(plpy, sql, ["bigint[]", "text"]), [ids, _label(p.source)])
    return {r["chunk_id"]: dict(r) for r in rows}


def _visible(plpy, p: PipelineView, rows: dict[int, dict]) -> dict[int, dict]:
    """The rows whose source row exists and the caller may see (the pipeline's visibility
    function, run as the caller: a row deleted since, by a committed DELETE, is gone from
    search at once, before a worker removes its chunks). A query of its own, on this
    server: a distributed chunk table's shards know nothing of the source."""
    if not rows:
        return rows
    seen = plpy.execute(prepared(plpy,
        f"SELECT d FROM unnest($1::text[]) AS d WHERE {p.visibility_function}(d)",
        ["text[]"]), [sorted({r["document_id"] for r in rows.values()})])
    keep = {r["d"] for r in seen}
    return {cid: row for cid, row in rows.items() if row["document_id"] in keep}


def _fetch_ranked(plpy, p: PipelineView, fused: list[tuple[int, float]], with_vectors: bool,
                  k: int | None, places: bool = False) -> list[tuple[dict, float]]:
    """The rows of the fused candidates, in fused order, with their scores. Given `k` (nothing
    re-orders them any more), only the first k are read: their content is what costs. A
    candidate deleted since it was found, or whose source row is gone or hidden (_visible), is
    skipped, and the next ones are read in its place."""
    ranked: list[tuple[dict, float]] = []
    start = 0
    while start < len(fused) and (k is None or len(ranked) < k):
        stop = len(fused) if k is None else start + k - len(ranked)
        found = _visible(plpy, p, _fetch(plpy, p, [cid for cid, _ in fused[start:stop]],
                                         with_vectors, places))
        ranked += [(found[cid], score) for cid, score in fused[start:stop] if cid in found]
        start = stop
    return ranked


def _label(source: str) -> str:
    """The source table as results name it ("table:key"): as a search_path with public shows
    it, although pgask runs with pg_catalog, pg_temp only (where regclass says public.t)."""
    return source.removeprefix("public.")


def _vectors(rows: list[dict]) -> np.ndarray:
    import numpy as np

    return np.array([jsonlite.loads(r["embedding"]) for r in rows], dtype=np.float32)


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


def _rerank(plpy, name: str, query: str, rows: list[dict]) -> tuple[list[float] | None,
                                                                    str | None]:
    """The reranker's scores, or (None, why) when it failed: a search still answers when the
    second stage is down, in first-stage order."""
    from pgask.providers import read_secret

    spec_row = plpy.execute(prepared(plpy, (
        "SELECT name, provider, model, base_url, api_key_env, options::text AS options_json"
        " FROM rag.rerankers WHERE name = $1"), ["text"]), [name])
    spec = RerankerSpec(**dict(spec_row[0]))
    # The same circuit breaker as a query's embedding: a reranker that keeps failing (down,
    # hanging) is not asked again for a while, so a statement of many searches does not wait
    # its timeout once per search.
    breaker = query_embedding.breaker_for(spec, limits.read(plpy))
    if not breaker.allows():
        return None, (f"{breaker.last_error} (not asked again for "
                      f"{breaker.seconds_left():.0f} s: it failed {breaker.failed_in_a_row} "
                      "times in a row in this session; rag.settings query_breaker_failures, "
                      "query_breaker_cooldown_seconds)")
    try:
        reranker = reranker_for(spec, jsonlite.loads(spec.options_json),
                                lambda secret: read_secret(plpy, secret))
        scores = reranker.scores(query, [r["content"] for r in rows])
    except KeyAccessError as exc:  # this role's privilege, not the reranker's health
        return None, str(exc)
    except RerankError as exc:
        breaker.failed(str(exc))
        return None, str(exc)
    breaker.succeeded()
    # A passage the reranker left out (or scored NaN or infinite) is not scored: it follows
    # the scored ones in first-stage order (an infinite score would not even be JSON).
    scores = [s if s is not None and math.isfinite(s) else None for s in scores]
    if rows and all(s is None for s in scores):
        return None, f"reranker {name!r} scored none of the {len(rows)} passages"
    return scores, None


def search(plpy, query: str, query_vector: str | None, k: int, filter_json, mode: str,
           pipeline: str, options_json) -> list[dict]:
    """rag.search's rows (the body of rag._search_rows); what degraded is said as a NOTICE
    (keyword only) or a WARNING (not reranked)."""
    try:
        rows, report = run(plpy, query, query_vector, k, filter_json, mode, pipeline,
                           options_json)
    except query_embedding.SearchUnavailable as exc:
        plpy.error(f"rag.search: {exc}", hint=exc.hint, sqlstate="38000")
    except KeyAccessError as exc:
        plpy.error(f"rag.search: {exc}", sqlstate="42501")
    if report.get("degraded"):
        plpy.notice(f"rag.search: {report['degraded']}; searched by keyword only (BM25)",
                    hint="Set option on_embedder_error to 'error' to fail instead "
                         "(rag.search options, or the pipeline's search_options).")
    if report.get("not_reranked"):
        plpy.warning(f"rag.search: {report['not_reranked']}; results are not reranked")
    return rows


def run(plpy, query: str, query_vector: str | None, k: int, filter_json, mode: str,
        pipeline: str, options_json, places: bool = False, embed_text: str | None = None
        ) -> tuple[list[dict], dict]:
    """rag.search's rows, and a report: the milliseconds of the phases worth reporting apart
    (embed_ms when the query was embedded here, rerank_ms when a reranker ran), "degraded"
    (why the search went on by keyword only) and "not_reranked" (why the reranker's order
    is missing). rag.answer calls this directly, having validated the arguments as
    rag.search does, with `places`: each row also has PLACE_COLUMNS; `embed_text` (hyde's
    hypothetical answer) replaces the query in the vector search. Without `query_vector`,
    the query is embedded with the pipeline's embedder (pgask.retrieval.query_embedding);
    when that fails, hybrid goes on by keyword (option on_embedder_error 'degrade'), or
    SearchUnavailable is raised."""
    report: dict = {}
    p = pinned(plpy, pipeline)
    options = SearchOptions.resolve(p.search_options, _parse(options_json))
    if mode in ("vector", "hybrid") and query_vector is None:
        started = time.perf_counter()
        try:
            query_vector = query_embedding.embed_query(
                plpy, p.embedder_for(p.active_set), embed_text or query)
        except query_embedding.EmbedderUnavailable as exc:
            if mode == "vector" or options.on_embedder_error == "error":
                raise query_embedding.SearchUnavailable(str(exc), mode) from None
            report["degraded"] = str(exc)
            mode = "keyword"
        report["embed_ms"] = (time.perf_counter() - started) * 1000
    compiled = _compile(plpy, filter_json, 3)
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
        keyword_filter = _compile(plpy, filter_json, 8)
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
        return [], report

    needs_vectors = options.mmr_lambda is not None or options.dedupe_threshold is not None
    ranked = _fetch_ranked(plpy, p, fused, needs_vectors,
                           None if needs_vectors or options.rerank is not None else k, places)

    rerank_scores: dict[int, float] = {}
    if options.rerank is not None and ranked:
        head = ranked[:options.rerank_depth]
        started = time.perf_counter()
        scores, report["not_reranked"] = _rerank(plpy, options.rerank, query,
                                                  [row for row, _ in head])
        report["rerank_ms"] = (time.perf_counter() - started) * 1000
        if scores is not None:
            rerank_scores = {row["chunk_id"]: s for (row, _), s in zip(head, scores,
                                                                        strict=True)
                             if s is not None}
            scored = sorted(((row, rerank_scores[row["chunk_id"]]) for row, _ in head
                             if row["chunk_id"] in rerank_scores), key=lambda pair: -pair[1])
            unscored = [pair for pair in head if pair[0]["chunk_id"] not in rerank_scores]
            ranked = scored + unscored + ranked[options.rerank_depth:]

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
            "metadata": jsonlite.loads(row["metadata"]),
            "score": score, "rank": position,
            "vector_rank": vector_rank.get(cid, (None, None))[0],
            "keyword_rank": keyword_rank.get(cid, (None, None))[0],
            "vector_score": vector_rank.get(cid, (None, None))[1],
            "keyword_score": keyword_rank.get(cid, (None, None))[1],
            "rerank_score": rerank_scores.get(cid),
        } | ({column: row[column] for column in PLACE_COLUMNS} if places else {}))
    return results, report
