-- rag._chunk(...): the PL/Python implementation behind rag.chunk; call rag.chunk instead.
CREATE OR REPLACE FUNCTION rag._chunk(
    document text, max_tokens integer, overlap integer
)
RETURNS TABLE (
    ordinal integer, content text, token_count integer, char_start integer, char_end integer
)
LANGUAGE plpython3u
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.chunk(document, max_tokens, overlap)
$$;

-- rag.chunk(document, max_tokens, overlap): splits text into chunks of at most max_tokens
-- word pieces of the embedding model's tokenizer, preferring paragraph, then sentence, then
-- word boundaries; consecutive chunks share up to `overlap` tokens. char_start/char_end are
-- offsets into document. A NULL document gives no rows. Logic: pgask/chunking.py.
CREATE OR REPLACE FUNCTION rag.chunk(
    document text, max_tokens integer DEFAULT 500, overlap integer DEFAULT 0
)
RETURNS TABLE (
    ordinal integer, content text, token_count integer, char_start integer, char_end integer
)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_tokens IS NULL OR max_tokens < 1 OR max_tokens > 8192 THEN
        RAISE EXCEPTION 'rag.chunk: max_tokens must be between 1 and 8192, got %',
            coalesce(max_tokens::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF overlap IS NULL OR overlap < 0 OR overlap >= max_tokens THEN
        RAISE EXCEPTION 'rag.chunk: overlap must be >= 0 and < max_tokens (%), got %',
            max_tokens, coalesce(overlap::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM rag._chunk(document, max_tokens, overlap);
END;
$$;
