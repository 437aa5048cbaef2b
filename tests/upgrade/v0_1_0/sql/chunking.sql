-- rag._check_chunk_size(max_tokens, overlap): raises 22023 unless 1 <= max_tokens <= 8192 and
-- 0 <= overlap < max_tokens; shared by the rag.chunk wrappers.
CREATE OR REPLACE FUNCTION rag._check_chunk_size(max_tokens integer, overlap integer)
RETURNS void
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
END;
$$;

-- rag._chunk(...): the PL/Python implementation behind rag.chunk(document, max_tokens,
-- overlap); call rag.chunk instead.
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
from pgask.chunking import chunk_rows
return [row[:5] for row in chunk_rows(document, "recursive", max_tokens, overlap, "minilm")]
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
    PERFORM rag._check_chunk_size(max_tokens, overlap);
    RETURN QUERY SELECT * FROM rag._chunk(document, max_tokens, overlap);
END;
$$;

-- rag._chunk_by(...): the PL/Python implementation behind rag.chunk(document, method, ...);
-- call rag.chunk instead.
CREATE OR REPLACE FUNCTION rag._chunk_by(
    document text, method text, max_tokens integer, overlap integer, tokenizer text
)
RETURNS TABLE (
    ordinal integer,
    content text,
    token_count integer,
    char_start integer,
    char_end integer,
    metadata jsonb,
    embed_text text
)
LANGUAGE plpython3u
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask.chunking import chunk_rows
return chunk_rows(document, method, max_tokens, overlap, tokenizer)
$$;

-- rag.chunk(document, method, max_tokens, overlap, tokenizer): splits text by a named method:
-- 'recursive' (as the three-argument rag.chunk), 'tokens' (fixed windows that ignore
-- structure), 'markdown' (within heading sections; code blocks and tables kept whole where
-- they fit; metadata.heading_path such as 'Install > Debian', also embedded in front of the
-- chunk: see embed_text) or 'html' (converted with rag.markdown_from_html, then 'markdown';
-- offsets index that converted text). Tokens are counted by tokenizer: 'minilm' (the
-- embedding model's word pieces), 'cl100k_base' or 'o200k_base' (OpenAI's); token_count
-- counts embed_text, which never exceeds max_tokens. A NULL document gives no rows.
-- Logic: pgask/chunking.py.
CREATE OR REPLACE FUNCTION rag.chunk(
    document text,
    method text,
    max_tokens integer DEFAULT 500,
    overlap integer DEFAULT 0,
    tokenizer text DEFAULT 'minilm'
)
RETURNS TABLE (
    ordinal integer,
    content text,
    token_count integer,
    char_start integer,
    char_end integer,
    metadata jsonb,
    embed_text text
)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Keep these lists equal to CHUNK_METHODS and TOKENIZERS in pgask (a test checks).
    IF method IS NULL OR method <> ALL (ARRAY['html', 'markdown', 'recursive', 'tokens']) THEN
        RAISE EXCEPTION 'rag.chunk: method must be one of html, markdown, recursive, tokens, '
            'got %', coalesce(quote_literal(method), 'NULL')
            USING errcode = 'invalid_parameter_value',
            hint = 'A text or NULL second argument selects rag.chunk(document, method, ...); '
            'pass max_tokens alone as an integer: rag.chunk(document, 200).';
    END IF;
    PERFORM rag._check_chunk_size(max_tokens, overlap);
    IF tokenizer IS NULL OR tokenizer <> ALL (ARRAY['minilm', 'cl100k_base', 'o200k_base']) THEN
        RAISE EXCEPTION 'rag.chunk: tokenizer must be one of minilm, cl100k_base, o200k_base, '
            'got %', coalesce(quote_literal(tokenizer), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM rag._chunk_by(document, method, max_tokens, overlap, tokenizer);
END;
$$;
