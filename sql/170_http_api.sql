-- HTTP: schema rag_api holds exactly the entry points a web client may call, for PostgREST
-- (and Supabase, which serves SQL functions through it) to expose as POST /rpc/<name>:
-- thin invoker wrappers of rag.search, rag.answer and rag.feedback with the same argument
-- names, which PostgREST takes from the JSON body. Nothing internal lives there, so exposing
-- rag_api (db-schemas = "rag_api") exposes no rag._* helper, registry or table.
-- tests/integration/test_security_catalog.py fails on a routine there that is not on its
-- list. Who calls them is the role PostgREST switches to (web_anon, authenticated): its own
-- grants and row-level security apply, as for any SQL caller. docs/clients.md, "PostgREST".

-- rag._web_user(): the web user a PostgREST request acts for: the `sub` claim of its JWT
-- (else `email`, else `role`, else ''), from request.jwt.claims as PostgREST sets it for
-- the transaction; NULL outside such a request. An attribution label within the database
-- role, not an authentication: any SQL caller can set that setting, so it only ever narrows
-- what the role sees (the answer log's row-level security, sql/990_privileges.sql). Claims
-- that are not a JSON object fail (22P02, 22023) rather than read as no web user. A label
-- over 1000 characters is its first 928 and the sha256 of the whole (1000 in all).
CREATE OR REPLACE FUNCTION rag._web_user()
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
    label text;
BEGIN
    IF claims IS NULL THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(claims) <> 'object' THEN
        RAISE EXCEPTION 'request.jwt.claims must be a JSON object (PostgREST sets it), got %',
            jsonb_typeof(claims)
            USING errcode = 'invalid_parameter_value';
    END IF;
    label := coalesce(
        nullif(claims ->> 'sub', ''), nullif(claims ->> 'email', ''),
        nullif(claims ->> 'role', ''), ''
    );
    -- The column holds 1000 characters. A longer label is not cut there, which made two web
    -- users sharing their first 1000 characters one: its head and the sha256 of the whole.
    IF length(label) > 1000 THEN
        label := left(label, 928) || ' sha256:'
            || encode(sha256(convert_to(label, 'UTF8')), 'hex');
    END IF;
    RETURN label;
END;
$$;

-- rag_api.search(query, k, filter, mode, pipeline, options): rag.search.
CREATE OR REPLACE FUNCTION rag_api.search(
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
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM rag.search(query, k, filter, mode, pipeline, options)
$$;

-- rag_api.answer(question, k, filter, pipeline, model, options): rag.answer (JSON: answer,
-- citations, answer_id for rag_api.feedback, ...). Logged with the web user (rag._web_user).
CREATE OR REPLACE FUNCTION rag_api.answer(
    question text,
    k integer DEFAULT 5,
    filter jsonb DEFAULT NULL,
    pipeline text DEFAULT NULL,
    model text DEFAULT NULL,
    options jsonb DEFAULT NULL
)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rag.answer(question, k, filter, pipeline, model, options)
$$;

-- rag_api.answer_text(question): public.rag_answer, the answer as text with its sources.
CREATE OR REPLACE FUNCTION rag_api.answer_text(question text)
RETURNS text
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rag.format_answer(rag.answer(question))
$$;

-- rag_api.feedback(answer_id, helpful, comment): rag.feedback: a verdict on one of the web
-- user's own answers (an answer of another web user of the same role is "not yours").
CREATE OR REPLACE FUNCTION rag_api.feedback(
    answer_id bigint, helpful boolean, comment text DEFAULT NULL
)
RETURNS bigint
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rag.feedback(answer_id, helpful, comment)
$$;
