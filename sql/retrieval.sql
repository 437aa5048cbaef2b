DROP FUNCTION IF EXISTS rag.search(text, integer);

-- rag.search(query, k, pipeline, embedder): the k chunks of a pipeline nearest to the query
-- by cosine similarity, over its HNSW index. The query is embedded once, with the pipeline's
-- pinned embedder, into a variable the index can order by (an embed() call in ORDER BY would
-- run per row and skip the index). Naming another embedder is an error: its vectors are not
-- comparable. score = cosine similarity in [-1, 1]; HNSW is approximate: see README.
CREATE OR REPLACE FUNCTION rag.search(
    query text,
    k integer DEFAULT 5,
    pipeline text DEFAULT 'documents',
    embedder text DEFAULT NULL
)
RETURNS TABLE (
    chunk_id bigint,
    document_id text,
    title text,
    source text,
    content text,
    metadata jsonb,
    score double precision
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    query_embedding vector;
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'rag.search: query must be a non-empty text, got %',
            coalesce(quote_literal(query), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'rag.search: k must be between 1 and 1000, got %', coalesce(k::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    p := rag._pipeline(pipeline, 'rag.search');
    IF embedder IS NOT NULL AND embedder <> p.embedder THEN
        RAISE EXCEPTION 'rag.search: pipeline % is embedded with embedder % (%, % dimensions); '
            'a query embedded with % cannot be compared with its vectors',
            p.name, p.embedder, p.embedding_model, p.dimensions, embedder
            USING errcode = 'invalid_parameter_value',
            hint = 'Leave embedder out, or switch the pipeline with rag.reembed.';
    END IF;
    query_embedding := rag.embed(query, p.embedder);
    RETURN QUERY EXECUTE format(
        'SELECT c.id, c.document_id, c.title,'
        ' coalesce(c.metadata ->> ''source'', %L || '':'' || c.document_id),'
        ' c.content, c.metadata, 1 - (c.embedding <=> $1)'
        ' FROM rag.%I AS c ORDER BY c.embedding <=> $1 LIMIT $2',
        p.source::text, p.name || '_chunks'
    ) USING query_embedding, k;
END;
$$;
