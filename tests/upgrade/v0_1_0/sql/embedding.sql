-- rag.embed(content): the 384-d embedding of one text with the pinned offline model
-- (all-MiniLM-L6-v2 int8, loaded once per backend). Inputs longer than 254 word pieces are
-- truncated by the model; rag.chunk output for indexing is sized so that never happens.
-- NULL gives NULL. STABLE lets the planner evaluate it once per query for an index scan.
-- Logic: pgask/embedders/.
CREATE OR REPLACE FUNCTION rag.embed(content text)
RETURNS vector
LANGUAGE plpython3u
STABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.embed(content)
$$;

-- rag.embed(contents[]): embeddings of many texts in one model call, in input order;
-- a NULL element gives a NULL vector.
CREATE OR REPLACE FUNCTION rag.embed(contents text[])
RETURNS vector[]
LANGUAGE plpython3u
STABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.embed_many(contents)
$$;

DROP FUNCTION IF EXISTS rag._chunk_and_embed(text, text);

-- rag._embed_with(...): the PL/Python implementation behind rag.embed(content, embedder);
-- it reports a provider failure in `error` so the wrapper can raise it without a traceback.
CREATE OR REPLACE FUNCTION rag._embed_with(
    content text, embedder text, OUT embedding vector, OUT error text
)
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.embed_with(plpy, content, embedder)
$$;

-- rag.embed(content, embedder): the embedding of one text with a registered embedder
-- (rag.embedders), e.g. to query a pipeline's chunks yourself with that pipeline's embedder.
-- Provider failures raise SQLSTATE 38000 with the provider's message (API keys redacted).
CREATE OR REPLACE FUNCTION rag.embed(content text, embedder text)
RETURNS vector
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    result record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rag.embedders AS e WHERE e.name = embedder) THEN
        RAISE EXCEPTION 'rag.embed: embedder % is not registered (see rag.create_embedder)',
            coalesce(quote_literal(embedder), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF content IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO result FROM rag._embed_with(content, embedder);
    IF result.error IS NOT NULL THEN
        RAISE EXCEPTION 'rag.embed: %', result.error
            USING errcode = 'external_routine_exception';
    END IF;
    RETURN result.embedding;
END;
$$;
