-- rag.embed(content): the 384-d embedding of one text with the pinned offline model
-- (all-MiniLM-L6-v2 int8, loaded once per backend). Inputs longer than 254 word pieces are
-- truncated by the model; rag.chunk output for indexing is sized so that never happens.
-- NULL gives NULL. STABLE lets the planner evaluate it once per query for an index scan.
-- Logic: pgask/embedders/.
CREATE OR REPLACE FUNCTION rag.embed(content text)
RETURNS _vector_schema_.vector
LANGUAGE plpython3u
STABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import sqlbridge
return sqlbridge.embed(content)
$$;

-- rag.embed(contents[]): embeddings of many texts in one model call, in input order;
-- a NULL element gives a NULL vector.
CREATE OR REPLACE FUNCTION rag.embed(contents text[])
RETURNS _vector_schema_.vector[]
LANGUAGE plpython3u
STABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import sqlbridge
return sqlbridge.embed_many(contents)
$$;

-- rag._embed_with(...): the PL/Python implementation behind rag.embed(content, embedder);
-- it reports a provider failure in `error` so the wrapper can raise it without a traceback.
CREATE OR REPLACE FUNCTION rag._embed_with(
    content text, embedder text, OUT embedding _vector_schema_.vector, OUT error text
)
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import sqlbridge
return sqlbridge.embed_with(plpy, content, embedder)
$$;

-- rag.embed(content, embedder): the embedding of one text with a registered embedder
-- (rag.embedders), e.g. to query a pipeline's chunks yourself with that pipeline's embedder.
-- Provider failures raise SQLSTATE 38000 with the provider's message (API keys redacted).
CREATE OR REPLACE FUNCTION rag.embed(content text, embedder text)
RETURNS _vector_schema_.vector
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
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
    IF result.error LIKE 'privilege: %' THEN
        -- The caller may not use the provider's stored key (pgask/providers/keys.py).
        RAISE EXCEPTION 'rag.embed: %', substr(result.error, 12)
            USING errcode = 'insufficient_privilege';
    END IF;
    IF result.error IS NOT NULL THEN
        RAISE EXCEPTION 'rag.embed: %', result.error
            USING errcode = 'external_routine_exception';
    END IF;
    RETURN result.embedding;
END;
$$;

-- rag.embedding_path(): which way this database's backends run the local model, for
-- `pgask doctor`: the shared model process (starting it if none runs) or each backend's own
-- copy, and why. Logic: pgask/embedders/service.py.
CREATE OR REPLACE FUNCTION rag.embedding_path()
RETURNS text
LANGUAGE plpython3u
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.embedders import service
return service.describe()
$$;
