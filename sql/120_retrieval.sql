-- Retrieval: rag.search over a pipeline's chunks: vector (HNSW), keyword (BM25 over a GIN-
-- indexed tsvector) or hybrid (reciprocal rank fusion of both), with metadata filters, an
-- optional reranker and MMR. Logic: pgask/retrieval/.

-- rag._as_timestamptz(value): a metadata value as a timestamp for date filters; NULL when it
-- is not an ISO 8601 date, so one malformed row does not fail a whole search.
CREATE OR REPLACE FUNCTION rag._as_timestamptz(value text)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL OR value !~ '^\d{4}-\d{2}-\d{2}' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END;
$$;

-- rag.bm25_term_stats: BM25's term statistics of the chunk tables the querying role may
-- SELECT (the view runs has_table_privilege as the querying role; security_barrier keeps its
-- filter ahead of the caller's conditions): the folded figures plus the deltas chunk writers
-- appended since (rag._bm25_maintain, rag._bm25_fold). They count every chunk, including
-- those that row-level security hides from the role: docs/security.md says what that reveals.
CREATE OR REPLACE VIEW rag.bm25_term_stats WITH (security_barrier) AS
WITH terms AS (
    SELECT
        b.store,
        b.lexeme,
        b.df
    FROM rag.bm25_terms AS b
    UNION ALL
    SELECT
        d.store,
        d.lexeme,
        d.df
    FROM rag.bm25_term_deltas AS d
),

stats AS (
    SELECT
        b.store,
        b.chunks,
        b.total_length
    FROM rag.bm25_stats AS b
    UNION ALL
    SELECT
        d.store,
        d.chunks,
        d.total_length
    FROM rag.bm25_stat_deltas AS d
),

term_totals AS (
    SELECT
        t.store,
        t.lexeme,
        sum(t.df) AS df
    FROM terms AS t
    GROUP BY t.store, t.lexeme
),

store_totals AS (
    SELECT
        s.store,
        sum(s.chunks) AS chunks,
        sum(s.total_length) AS total_length
    FROM stats AS s
    GROUP BY s.store
)

SELECT
    t.store,
    t.lexeme,
    t.df::integer AS df,
    s.chunks::bigint AS chunks,
    s.total_length::bigint AS total_length
FROM term_totals AS t
INNER JOIN store_totals AS s ON t.store = s.store
WHERE has_table_privilege(to_regclass(format('rag.%I', t.store)), 'SELECT');

-- rag._bm25_idf(store, lexemes): BM25's idf of each lexeme that occurs in a chunk table, and
-- the table's average chunk length; nothing for a chunk table the caller may not read (it
-- runs as the caller, through rag.bm25_term_stats).
CREATE OR REPLACE FUNCTION rag._bm25_idf(store_name text, lexemes text[])
RETURNS TABLE (lexeme text, idf double precision, avgdl double precision)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        t.lexeme,
        ln(1 + (t.chunks - t.df + 0.5) / (t.df + 0.5)),
        t.total_length::double precision / greatest(t.chunks, 1)
    FROM rag.bm25_term_stats AS t
    WHERE t.store = store_name AND t.lexeme = ANY(lexemes) AND t.df > 0
$$;

-- rag._search_error(filter, options, pipeline): NULL when rag.search can use them, else why.
CREATE OR REPLACE FUNCTION rag._search_error(
    filter jsonb, options jsonb, pipeline text DEFAULT NULL
)
RETURNS text
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.retrieval import search
return search.search_error(plpy, filter, options, pipeline)
$$;

-- rag._search_rows(...): the PL/Python implementation behind rag.search (call rag.search); the
-- rows as a JSON array; query_vector NULL: it embeds the query itself. Not a set-returning
-- PL/Python function: a backend running one while `pgask install` replaced it crashed
-- (PostgreSQL 15.x, reproduced), which took every other connection down with it.
CREATE OR REPLACE FUNCTION rag._search_rows(
    query text, query_vector text, k integer, filter jsonb, mode text, pipeline text,
    options jsonb
)
RETURNS jsonb
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import jsonlite
from pgask.retrieval import search
return jsonlite.dumps(search.search(plpy, query, query_vector, k, filter, mode, pipeline,
                                    options))
$$;

-- rag._default_pipeline(): the pipeline rag.search uses when none is named: 'documents', or
-- the only pipeline there is.
CREATE OR REPLACE FUNCTION rag._default_pipeline()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT name FROM rag.pipelines WHERE name = 'documents'),
        (SELECT min(name) FROM rag.pipelines HAVING count(*) = 1),
        'documents'
    )
$$;

-- rag.search(query, k, filter, mode, pipeline, options): the k best chunks of a pipeline for
-- a query, usable in joins (SELECT ... FROM rag.search('...') AS s JOIN my_table ...).
--   mode 'hybrid' (default): reciprocal rank fusion of the vector and BM25 lists, each
--     k * candidates_factor deep; 'vector': cosine similarity over the HNSW index, the query
--     embedded with the pipeline's pinned embedder; 'keyword': BM25 over the chunks' tsvector.
--   filter: conditions on the chunks' metadata, e.g. '{"lang": "en", "year": {"$gte": 2020}}'
--     (operators $eq $ne $in $nin $gt $gte $lt $lte $exists $and $or; dates as ISO strings),
--     applied inside both searches; iterative index scans keep filling k rows.
--   options (over the pipeline's search_options): ef_search, max_scan_tuples, bm25_k1,
--     bm25_b, fusion (rrf | zscore), rrf_k, vector_weight, keyword_weight, candidates_factor,
--     rerank (a rag.rerankers name), rerank_depth, mmr_lambda, dedupe_threshold,
--     on_embedder_error (degrade | error).
--   When the query's embedding cannot be had (the embedder down, slow, failing, no key),
--     which costs at most rag.settings query_embed_budget_ms (2 s), and nothing while the
--     session's circuit breaker for that embedder is open: hybrid returns the BM25 ranking
--     with a NOTICE saying why (on_embedder_error 'degrade', the default) or fails with
--     38000 ('error'); vector fails with 38000, its hint naming keyword mode.
-- score: the final ordering's score (RRF or z-score sum in hybrid, cosine in vector, BM25 in
-- keyword, the reranker's for reranked rows); rank 1..k; per-signal ranks and scores
-- alongside (NULL where a list did not hold the chunk). Runs as the caller: chunks of source
-- rows the caller cannot read (privileges, row-level security) are never returned.
CREATE OR REPLACE FUNCTION rag.search(
    query text,
    k integer DEFAULT 5,
    filter jsonb DEFAULT NULL,
    mode text DEFAULT 'hybrid',
    pipeline text DEFAULT NULL,
    options jsonb DEFAULT NULL
)
RETURNS TABLE (
    chunk_id bigint,
    document_id text,
    title text,
    source text,
    content text,
    metadata jsonb,
    score double precision,
    rank integer,
    vector_rank integer,
    keyword_rank integer,
    vector_score double precision,
    keyword_score double precision,
    rerank_score double precision
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    problem text;
    state text;
    message text;
    hint text;
BEGIN
    IF query IS NULL OR query !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'rag.search: query must be a non-empty text, got %',
            coalesce(quote_literal(query), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF length(query) > 100000 THEN
        RAISE EXCEPTION 'rag.search: query must be at most 100000 characters, got %',
            length(query)
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'rag.search: k must be between 1 and 1000, got %', coalesce(k::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF mode IS NULL OR mode NOT IN ('hybrid', 'vector', 'keyword') THEN
        RAISE EXCEPTION 'rag.search: mode must be ''hybrid'', ''vector'' or ''keyword'', got %',
            coalesce(quote_literal(mode), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF filter IS NOT NULL AND jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'rag.search: filter must be a JSON object such as {"lang": "en"}, got %',
            filter
            USING errcode = 'invalid_parameter_value';
    END IF;
    p := rag._pipeline(coalesce(pipeline, rag._default_pipeline()), 'rag.search');
    PERFORM rag._check_reader(p.name, 'rag.search');
    -- Opens (so locks) the active chunk table first, before the query is embedded: a
    -- re-embed's switch drops the old table, and must wait for the searches whose snapshot
    -- still reads it (pgask.retrieval.search.pinned).
    BEGIN
        EXECUTE format('SELECT FROM rag.%I LIMIT 0', rag._store(p.name, p.active_set));
    EXCEPTION WHEN undefined_table THEN
        NULL;  -- dropped by a switch since this query began: the search reads the new set
    END;
    problem := rag._search_error(filter, options, p.name);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'rag.search: %', problem
            USING errcode = 'invalid_parameter_value';
    END IF;
    -- The query is embedded inside (pgask.retrieval.query_embedding: a short timeout, a
    -- retry budget and a circuit breaker); when that fails, hybrid goes on by keyword with a
    -- NOTICE (option on_embedder_error 'degrade'), or it fails with 38000.
    RETURN QUERY SELECT * FROM jsonb_to_recordset(rag._search_rows(
        query, NULL, k, filter, mode, p.name, options
    )) AS r (
        chunk_id bigint, document_id text, title text, source text, content text,
        metadata jsonb, score double precision, rank integer, vector_rank integer,
        keyword_rank integer, vector_score double precision, keyword_score double precision,
        rerank_score double precision
    );
EXCEPTION WHEN others OR query_canceled THEN  -- (others leaves out a cancel)
    -- Whatever failed (a provider, a privilege, a cancel), one error shape: no traceback.
    GET STACKED DIAGNOSTICS state = returned_sqlstate, message = message_text,
        hint = pg_exception_hint;
    PERFORM rag._raise_clean('rag.search', state, message, hint);
END;
$$;

-- rag.create_reranker(name, provider, model, base_url, api_key_env, options): registers a
-- second stage for rag.search(..., options => '{"rerank": "name"}'). provider 'cohere': the
-- /rerank API of Cohere, Jina, vLLM (base_url up to /v1); 'tei': text-embeddings-inference;
-- 'local': best-sentence similarity with the offline model (no download). api_key_env as
-- for embedders. options: timeout_seconds. A failing reranker leaves results in first-stage
-- order with a WARNING, so a search never fails because of it.
CREATE OR REPLACE FUNCTION rag.create_reranker(
    name text,
    provider text DEFAULT 'cohere',
    model text DEFAULT NULL,
    base_url text DEFAULT NULL,
    api_key_env text DEFAULT NULL,
    options jsonb DEFAULT '{}'::jsonb
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.create_reranker');
    IF provider IS NULL OR provider NOT IN ('local', 'cohere', 'tei') THEN
        RAISE EXCEPTION 'rag.create_reranker: provider must be ''cohere'' (Cohere, Jina, vLLM), '
            '''tei'' or ''local'', got %', coalesce(quote_literal(provider), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    PERFORM rag._check_registration('rag.create_reranker', name, base_url,
        CASE WHEN provider <> 'local' THEN 'https://api.cohere.com/v2' END, options);
    INSERT INTO rag.rerankers AS r (name, provider, model, base_url, api_key_env, options)
    VALUES (name, provider, model, base_url, api_key_env, options)
    ON CONFLICT ON CONSTRAINT rerankers_pkey DO UPDATE
        SET provider = excluded.provider, model = excluded.model, base_url = excluded.base_url,
        api_key_env = excluded.api_key_env, options = excluded.options;
END;
$$;

-- The built-in second stage, always available as reranker 'local'.
INSERT INTO rag.rerankers (name, provider) VALUES ('local', 'local')
ON CONFLICT (name) DO NOTHING;
