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

-- rag._chunk_and_embed(document, title): the chunks the index stores for one document, with
-- their embeddings (title embedded in front of each chunk). Used by the documents trigger.
CREATE OR REPLACE FUNCTION rag._chunk_and_embed(document text, title text)
RETURNS TABLE (
    ordinal integer,
    content text,
    token_count integer,
    char_start integer,
    char_end integer,
    embedding vector
)
LANGUAGE plpython3u
STABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.chunk_and_embed(document, title)
$$;
