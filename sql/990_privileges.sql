-- Security: the roles, what each may execute, and the rules of the answer log. Applied last
-- by every install (before the hand-over to pgask_owner, 999_ownership.sql), so it decides
-- every grant of schema rag. The model, the threat model and the test proving each promise:
-- docs/security.md.
--   pgask_owner (owns schema rag; no superuser, no members): runs the SECURITY DEFINER
--   functions.
--   pgask_admin: defines pipelines (whose SQL also needs its source table owner's rights),
--   registries and keys. pgask_worker: processes the queue.
--   pgask_reader: may use provider keys stored with rag.set_secret (never read them).
--   pgask_auditor: reads every row of rag.answer_log and rag.answer_feedback.
--   pgask_dashboard: what a BI dashboard reads (docs/dashboard.md): the BI and status views
--   over every role's rows (a member of pgask_auditor).
--   PUBLIC: the entry points listed below, which run with the caller's own privileges.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgask_reader') THEN
        CREATE ROLE pgask_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgask_auditor') THEN
        CREATE ROLE pgask_auditor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgask_dashboard') THEN
        CREATE ROLE pgask_dashboard NOLOGIN;
    END IF;
END;
$$;

DROP FUNCTION IF EXISTS rag._secret(text);

-- rag._put_policy(tbl, policy, definition): row-level security on tbl with the policy
-- `policy` defined as `definition` (what follows CREATE POLICY name ON table), changed only
-- when it differs from what the last install made (a marker in its comment). Re-creating a
-- policy takes an ACCESS EXCLUSIVE lock on its table, held to the end of the install: that
-- would queue behind, and deadlock with, sessions that read the table while the install
-- replaces the views they read next.
CREATE OR REPLACE FUNCTION rag._put_policy(tbl regclass, policy name, definition text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    marker text := 'pgask ' || md5(definition);
BEGIN
    IF NOT (SELECT c.relrowsecurity FROM pg_class AS c WHERE c.oid = tbl) THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    END IF;
    IF (SELECT obj_description(pol.oid, 'pg_policy') FROM pg_policy AS pol
            WHERE pol.polrelid = tbl AND pol.polname = policy) IS NOT DISTINCT FROM marker THEN
        RETURN;
    END IF;
    EXECUTE format('DROP POLICY IF EXISTS %I ON %s', policy, tbl);
    EXECUTE format('CREATE POLICY %I ON %s %s', policy, tbl, definition);
    EXECUTE format('COMMENT ON POLICY %I ON %s IS %L', policy, tbl, marker);
END;
$$;

-- rag._use_secret(name): loads a stored key into pgask's Python code in this backend (see
-- pgask/providers/keys.py) and returns whether it exists, never the key. SECURITY DEFINER: it
-- reads rag.secrets, which only the owner may. Executable by pgask_reader and the owner.
CREATE OR REPLACE FUNCTION rag._use_secret(secret_name text)
RETURNS boolean
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.providers import keys
return keys.load(plpy, secret_name)
$$;

COMMENT ON FUNCTION rag._use_secret(text) IS
'SECURITY DEFINER: reads rag.secrets (owner only) for pgask_reader members; returns no key';

-- rag.grant_usage(role, usage): lets a role use pgask beyond what PUBLIC may: 'reader' (search
-- and answer with providers whose key is stored with rag.set_secret), 'auditor' (read
-- every role's rows of the answer log and feedback) or 'dashboard' (the BI and status views
-- over every role's answers: an auditor that also reads rag.pipeline_status,
-- rag.dead_letters and rag.eval_summary). For admins (members of the owner).
CREATE OR REPLACE FUNCTION rag.grant_usage(role_name regrole, usage text DEFAULT 'reader')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.grant_usage');
    IF role_name IS NULL OR usage IS NULL OR usage NOT IN ('reader', 'auditor', 'dashboard') THEN
        RAISE EXCEPTION 'rag.grant_usage: role must name a role and usage must be ''reader'' '
            '(search and answer with stored API keys), ''auditor'' (read the whole answer '
            'log) or ''dashboard'' (the BI and status views), got % and %',
            coalesce(role_name::text, 'NULL'),
            coalesce(quote_literal(usage), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    EXECUTE format('GRANT %I TO %s', 'pgask_' || usage, role_name);
END;
$$;

-- rag.revoke_usage(role, usage): takes back what rag.grant_usage gave.
CREATE OR REPLACE FUNCTION rag.revoke_usage(role_name regrole, usage text DEFAULT 'reader')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.revoke_usage');
    IF role_name IS NULL OR usage IS NULL OR usage NOT IN ('reader', 'auditor', 'dashboard') THEN
        RAISE EXCEPTION 'rag.revoke_usage: role must name a role and usage must be ''reader'', '
            '''auditor'' or ''dashboard'', got % and %', coalesce(role_name::text, 'NULL'),
            coalesce(quote_literal(usage), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    EXECUTE format('REVOKE %I FROM %s', 'pgask_' || usage, role_name);
END;
$$;

-- rag._chunks_readable(pipeline, ids): true when the caller may read the pipeline's chunks
-- and sees every one of `ids`; the answer log's policy asks it as the role writing a row.
CREATE OR REPLACE FUNCTION rag._chunks_readable(pipeline text, ids bigint[])
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chunks regclass := to_regclass(format('rag.%I', pipeline || '_chunks'));
    seen bigint;
BEGIN
    IF chunks IS NULL OR NOT has_table_privilege(chunks, 'SELECT') THEN
        RETURN false;
    END IF;
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN true;
    END IF;
    EXECUTE format('SELECT count(DISTINCT c.id) FROM %s AS c WHERE c.id = ANY($1)', chunks)
    INTO seen USING ids;
    RETURN seen = (SELECT count(DISTINCT i.id) FROM unnest(ids) AS i (id));
END;
$$;

-- rag._prune_answer_log(): deletes up to 100 answer-log rows older than the retention
-- setting; every logged answer calls it, so the log stays within its retention without a
-- scheduler. SECURITY DEFINER: askers may not DELETE from the log; it removes nothing else.
CREATE OR REPLACE FUNCTION rag._prune_answer_log()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM rag.answer_log AS l
    WHERE l.id IN (
        SELECT x.id FROM rag.answer_log AS x
        WHERE x.asked_at < now() - make_interval(days => coalesce(
            (SELECT s.value::integer FROM rag.settings AS s
                WHERE s.key = 'answer_log_retention_days'), 90))
        ORDER BY x.asked_at
        LIMIT 100
    )
$$;

COMMENT ON FUNCTION rag._prune_answer_log() IS
'SECURITY DEFINER: askers cannot DELETE log rows; removes only rows past the retention';

-- The answer log and feedback: each role reads and writes its own rows (asked_by and
-- given_by default to current_user, and no role but the owner may set them); members of
-- pgask_auditor read all. A row may cite only chunks its writer can read. The owner is exempt
-- from the policies, as owners are. Within a role, a PostgREST request's web user
-- (rag._web_user(), NULL outside one) reads and writes only its own rows (web_user): the
-- web users behind one PostgREST role are not one asker. Only ever a narrowing (any SQL
-- caller may set request.jwt.claims): a role never sees another role's rows through it.
SELECT rag._put_policy(
    'rag.answer_log', 'own_rows', 'FOR SELECT'
    ' USING (asked_by = current_user AND ((SELECT rag._web_user()) IS NULL'
    ' OR web_user = (SELECT rag._web_user()))'
    ' OR pg_has_role(''pgask_auditor'', ''USAGE''))'
);
SELECT rag._put_policy(
    'rag.answer_log', 'own_answers', 'FOR INSERT WITH CHECK ('
    ' asked_by = current_user'
    ' AND web_user IS NOT DISTINCT FROM (SELECT rag._web_user())'
    ' AND rag._chunks_readable(pipeline, retrieved_chunk_ids || cited_chunk_ids)'
    ' AND rag._answer_token_ok(answer_token))'
);
REVOKE ALL ON rag.answer_log, rag.answer_feedback FROM public;
GRANT SELECT ON rag.answer_log TO public;
GRANT INSERT (
    pipeline, question, answer, mode, model, llm, grounded, problems, retrieved_chunk_ids,
    retrieved_scores, cited_chunk_ids, cited_document_ids, cited_sources, prompt_tokens,
    completion_tokens, cost, currency, timings_ms, total_ms, error, answer_token, degraded,
    web_user
) ON rag.answer_log TO public;

SELECT rag._put_policy(
    'rag.answer_feedback', 'own_feedback', 'FOR SELECT'
    ' USING (given_by = current_user AND ((SELECT rag._web_user()) IS NULL'
    ' OR web_user = (SELECT rag._web_user()))'
    ' OR pg_has_role(''pgask_auditor'', ''USAGE''))'
);
-- The answer must be visible to the writer: its own, or any for an auditor.
SELECT rag._put_policy(
    'rag.answer_feedback', 'on_visible_answers', 'FOR INSERT WITH CHECK ('
    ' given_by = current_user'
    ' AND web_user IS NOT DISTINCT FROM (SELECT rag._web_user())'
    ' AND EXISTS (SELECT 1 FROM rag.answer_log AS l WHERE l.id = answer_feedback.answer_id))'
);
GRANT SELECT ON rag.answer_feedback TO public;
GRANT INSERT (answer_id, helpful, comment, web_user) ON rag.answer_feedback TO public;

-- The BI views read the log as the querying role, so they show what its policies allow.
ALTER VIEW rag.answer_feedback_totals SET (security_invoker = true);
ALTER VIEW rag.answers_daily SET (security_invoker = true);
ALTER VIEW rag.top_unanswered SET (security_invoker = true);
ALTER VIEW rag.document_usage SET (security_invoker = true);
GRANT SELECT ON rag.answer_feedback_totals, rag.answers_daily, rag.top_unanswered,
rag.document_usage, rag.bm25_term_stats, rag.llm_prices TO public;
-- A dashboard (rag.grant_usage(role, 'dashboard')): the BI views over every role's answers
-- (as an auditor) and the status views, which read the queue as their owner.
DO $$
BEGIN
    EXECUTE 'GRANT pgask_auditor TO pgask_dashboard';
END;
$$;
GRANT SELECT ON rag.pipeline_status, rag.dead_letters, rag.eval_summary TO pgask_dashboard;

-- EXECUTE: nothing in schema rag for PUBLIC but the entry points below, which run with the
-- caller's own privileges (each with its reason in PUBLIC_EXECUTE of
-- tests/integration/test_security_catalog.py, which fails when a routine is executable by
-- PUBLIC without one). Functions generated for pipelines are revoked when they are created
-- (rag._install_capture).
REVOKE ALL ON ALL ROUTINES IN SCHEMA rag FROM public;
REVOKE ALL ON FUNCTION public.rag_answer(text) FROM public;
GRANT EXECUTE ON FUNCTION
rag.search(text, integer, jsonb, text, text, jsonb),
rag.answer(text, integer, jsonb, text, text, jsonb),
rag.answer_sources(text, integer, jsonb, text, text),
public.rag_answer(text),
rag.format_answer(jsonb),
rag.feedback(bigint, boolean, text),
rag.embed(text),
rag.embed(text[]),
rag.embed(text, text),
rag.chunk(text, integer, integer),
rag.chunk(text, text, integer, integer, text),
rag.markdown_from_html(text),
rag.text_from_pdf(bytea),
rag.create_pipeline(text, regclass, text, text, text[], jsonb, text, text, regconfig),
rag.create_pipeline(text, regclass, text[], text, text[], jsonb, text, text, regconfig),
rag.alter_pipeline(
    text, jsonb, text[], text, integer, double precision, double precision, regconfig,
    jsonb, jsonb
),
rag.drop_pipeline(text),
rag.reembed(text, text),
rag.create_embedder(text, text, text, integer, text, text, jsonb),
rag.create_reranker(text, text, text, text, text, jsonb),
rag.create_llm(text, text, text, text, text, jsonb, boolean),
rag.drop_llm(text),
rag.set_secret(text, text, text[]),
rag.grant_usage(regrole, text),
rag.revoke_usage(regrole, text),
rag.retry_failed(text),
rag._python_init(),
rag._pipeline(text, text),
rag._default_pipeline(),
rag._search_error(jsonb, jsonb, text),
rag._search_rows(text, text, integer, jsonb, text, text, jsonb),
rag._bm25_idf(text, text[]),
rag._embed_with(text, text),
rag._as_timestamptz(text),
rag._answer(text, integer, jsonb, text, text, jsonb),
rag._answer_options_error(jsonb),
rag._llm_options_error(jsonb),
rag._log_answer(jsonb),
rag._chunks_readable(text, bigint[]),
rag._answer_token_ok(text),
rag._prune_answer_log(),
rag._chunk(text, integer, integer),
rag._chunk_by(text, text, integer, integer, text),
rag._check_chunk_size(integer, integer),
rag._text_from_pdf(bytea),
rag._require_admin(text),
rag._caller(),
rag._check_registration(text, text, text, text, jsonb),
rag._chunker_error(jsonb),
rag.distribute_pipeline(text, integer),
rag._distributed(text),
rag._raise_clean(text, text, text, text),
rag._check_document(text, text),
rag._check_reader(text, text),
rag._store(text, integer),
rag._attach_capture(text, boolean),
rag._lock_nowait(regclass[], text, text),
rag._capture_targets(text),
rag._partition_tree(oid),
rag._on_ddl_as_runner(),
rag._web_user()
TO public;
-- Schema rag_api (sql/170_http_api.sql): the HTTP entry points, invoker wrappers of the
-- entry points above, for every role (PostgREST's web_anon and authenticated included).
GRANT USAGE ON SCHEMA rag_api TO public;
REVOKE ALL ON ALL ROUTINES IN SCHEMA rag_api FROM public;
GRANT EXECUTE ON FUNCTION
rag_api.search(text, integer, jsonb, text, text, jsonb),
rag_api.answer(text, integer, jsonb, text, text, jsonb),
rag_api.answer_text(text),
rag_api.feedback(bigint, boolean, text)
TO public;
-- Each pipeline's capture function (trigger functions cannot be called; EXECUTE is for
-- whoever creates a capture trigger: a source's owner, or whoever adds a partition) and
-- visibility function (rag.search and row-level security run it as the reader).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        INNER JOIN rag.pipelines AS x ON p.oid IN (
            to_regprocedure(format('rag.%I()', 'pgask_' || x.name || '_capture')),
            to_regprocedure(format('rag.%I(text)', 'pgask_' || x.name || '_visible')))
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO public', f);
    END LOOP;
END;
$$;
GRANT EXECUTE ON PROCEDURE
rag.process_queue(text, integer, double precision, double precision, bigint)
TO public;
GRANT EXECUTE ON FUNCTION rag._use_secret(text) TO pgask_reader;

-- pgask_admin (defines pipelines, registries, keys) and pgask_worker (processes the queue):
-- every routine (the internal ones check what they must: the caller's role, and a
-- pipeline's author must have the source owner's privileges), and what processing the
-- queue writes: the queue, the inbox, statistics, evaluation runs, the chunk tables
-- (rag._sync_security keeps their grants on new ones). Pipelines and the record of
-- migrations change only through pgask's definer functions, which check the caller: who
-- could write a pipeline's SQL or its source directly would have a superuser's `pgask
-- install`, or another owner's change, run it. Admins register providers and change
-- settings, but not the Python site directory (row-level security, below); workers only
-- read them. Not the keys (rag.set_secret stores them through a definer function), not the
-- loans of rag_source or pgask's private rows, and the answer log as every role has it.
-- Neither role is a member of pgask_owner, which has no members: no role but a superuser
-- can change pgask's code.
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA rag TO pgask_admin, pgask_worker;
-- But not pgask's internal definer routines that change pipelines or their objects without
-- checking the caller: only pgask's own definer code calls them (as pgask_owner). Those
-- admins and workers do call check it (rag._require_admin, rag._require_lender) or change
-- nothing that the pipeline's state does not dictate (idempotent syncs); a worker marks a
-- pipeline broken only through rag._mark_unreadable, which sees for itself.
REVOKE EXECUTE ON FUNCTION
rag._mark_broken(text, text),
rag._lock_out(text),
rag._install_capture(text),
rag._install_visibility(text),
rag._sync_sentence_columns(text, integer)
FROM pgask_admin, pgask_worker;
-- (Chunk tables keep the grants rag._sync_security gives them.)
GRANT SELECT ON ALL TABLES IN SCHEMA rag TO pgask_admin, pgask_worker;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON rag.pipelines, rag.migrations,
rag.embedders, rag.llms, rag.rerankers, rag.llm_prices, rag.settings, rag.documents
FROM pgask_admin, pgask_worker;
REVOKE ALL ON rag.secrets, rag.source_schema_loans, rag.private, rag.answer_log,
rag.answer_feedback FROM pgask_admin, pgask_worker;
GRANT INSERT, UPDATE, DELETE ON rag.queue, rag.inbox, rag.pipeline_stats, rag.bm25_terms,
rag.bm25_stats, rag.bm25_term_deltas, rag.bm25_stat_deltas, rag.eval_runs, rag.eval_results
TO pgask_admin, pgask_worker;
GRANT INSERT, UPDATE, DELETE ON rag.embedders, rag.llms, rag.rerankers, rag.llm_prices,
rag.settings, rag.documents TO pgask_admin;
SELECT rag._put_policy('rag.settings', 'everyone_reads', 'FOR SELECT USING (true)');
SELECT rag._put_policy(
    'rag.settings', 'admins_write', 'FOR ALL TO pgask_admin'
    ' USING (key NOT IN (''python_site'', ''version''))'
    ' WITH CHECK (key NOT IN (''python_site'', ''version''))'
);
-- Admins grant the reader, auditor and dashboard roles (rag.grant_usage), which needs their
-- ADMIN OPTION.
DO $$
BEGIN
    EXECUTE 'GRANT pgask_reader, pgask_auditor, pgask_dashboard TO pgask_admin WITH ADMIN OPTION';
END;
$$;
