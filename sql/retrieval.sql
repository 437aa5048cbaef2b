-- rag.search(query, k): the k chunks nearest to the query by cosine similarity, over the
-- HNSW index. The query is embedded once, into a variable, so the index can order by it
-- (an embed() call in ORDER BY would run per row and skip the index).
-- score = cosine similarity in [-1, 1]; higher is closer. HNSW is approximate: see README.
CREATE OR REPLACE FUNCTION rag.search(query text, k integer DEFAULT 5)
RETURNS TABLE (
    chunk_id bigint,
    document_id bigint,
    title text,
    source text,
    content text,
    score double precision
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
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
    query_embedding := rag.embed(query);
    RETURN QUERY
    SELECT
        c.id,
        c.document_id,
        d.title,
        d.source,
        c.content,
        1 - (c.embedding <=> query_embedding)
    FROM rag.chunks AS c
    INNER JOIN rag.documents AS d ON c.document_id = d.id
    ORDER BY c.embedding <=> query_embedding
    LIMIT k;
END;
$$;
