-- Answers: rag.answer / rag_answer / rag.answer_sources, LLMs as data, the answer log, its BI
-- views and feedback. Logic: pgask/answering/.
-- (Over 400 lines: the answer log's rules sit next to the code that writes it.)

-- How long answer_log rows are kept (days); rag._log_answer prunes older ones as it goes.
INSERT INTO rag.settings (key, value) VALUES ('answer_log_retention_days', '90')
ON CONFLICT (key) DO NOTHING;

-- rag.create_llm(name, provider, model, base_url, api_key_env, options, make_default):
-- registers (or redefines) a chat model for generated answers: any OpenAI-compatible
-- /chat/completions endpoint (OpenAI https://api.openai.com/v1, Ollama
-- http://localhost:11434/v1, vLLM, llama.cpp server, `pgask serve-llm`); provider 'azure'
-- for Azure OpenAI (base_url https://NAME.openai.azure.com, model = deployment, options
-- api_version). api_key_env: an environment variable of the database server or
-- 'secret:NAME' (rag.set_secret). options: timeout_seconds, max_tokens, temperature,
-- max_retries, retry_base_seconds. make_default: rag_answer uses it from now on.
CREATE OR REPLACE FUNCTION rag.create_llm(
    name text,
    provider text DEFAULT 'openai',
    model text DEFAULT NULL,
    base_url text DEFAULT NULL,
    api_key_env text DEFAULT NULL,
    options jsonb DEFAULT '{}'::jsonb,
    make_default boolean DEFAULT TRUE
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text;
BEGIN
    PERFORM rag._require_admin('rag.create_llm');
    PERFORM rag._check_registration('rag.create_llm', name, base_url,
        'https://api.openai.com/v1', options);
    IF name = 'extractive' THEN
        RAISE EXCEPTION 'rag.create_llm: the name ''extractive'' is taken: in rag.answer it '
            'means "no LLM"'
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF provider IS NULL OR provider NOT IN ('openai', 'azure') THEN
        RAISE EXCEPTION 'rag.create_llm: provider must be ''openai'' (any OpenAI-compatible '
            'endpoint) or ''azure'', got %', coalesce(quote_literal(provider), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF model IS NULL OR btrim(model) = '' THEN
        RAISE EXCEPTION 'rag.create_llm: model is required (the model or deployment name)'
            USING errcode = 'invalid_parameter_value';
    END IF;
    problem := rag._llm_options_error(options);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_llm: options: %', problem
            USING errcode = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.llms AS l (name, provider, model, base_url, api_key_env, options)
    VALUES (name, provider, model, base_url, api_key_env, options)
    ON CONFLICT ON CONSTRAINT llms_pkey DO UPDATE
        SET provider = excluded.provider, model = excluded.model, base_url = excluded.base_url,
        api_key_env = excluded.api_key_env, options = excluded.options;
    IF make_default THEN
        INSERT INTO rag.settings AS s (key, value) VALUES ('default_llm', name)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    END IF;
END;
$$;

-- rag.drop_llm(name): removes an LLM; rag_answer goes back to extractive answers if it was
-- the default.
CREATE OR REPLACE FUNCTION rag.drop_llm(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.drop_llm');
    DELETE FROM rag.llms AS l WHERE l.name = drop_llm.name;
    IF NOT found THEN
        RAISE EXCEPTION 'rag.drop_llm: LLM % is not registered', coalesce(quote_literal(name),
            'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    DELETE FROM rag.settings AS s WHERE s.key = 'default_llm' AND s.value = drop_llm.name;
END;
$$;

-- rag._llm_options_error(options): NULL when LLM options are valid, else why not.
CREATE OR REPLACE FUNCTION rag._llm_options_error(options jsonb)
RETURNS text
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.answering import pipeline
return pipeline.llm_options_error(options)
$$;

-- rag._answer_options_error(options): NULL when rag.answer options are valid, else why not.
CREATE OR REPLACE FUNCTION rag._answer_options_error(options jsonb)
RETURNS text
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.answering import pipeline
return pipeline.answer_options_error(options)
$$;

-- rag._answer_token_ok(token): whether `token` is one that rag.answer's code issued in
-- this backend for the answer it is logging, and uses it up (pgask/answering/log_tokens.py):
-- the answer log's insert policy asks it, so a row comes only from pgask's answer path.
CREATE OR REPLACE FUNCTION rag._answer_token_ok(token text)
RETURNS boolean
LANGUAGE plpython3u
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.answering import log_tokens
return log_tokens.consume(token)
$$;

-- rag._log_answer(entry): records one answer (rag.answer_log) as the asking role and prunes
-- rows older than the retention setting; returns the answer's id, or NULL when the role
-- logged answer_log_max_per_minute answers in the last minute already (rag.answer says the
-- log was skipped). Runs as the caller: the log's row-level security admits only a row of
-- the caller's own (asked_by is always current_user) that cites chunks the caller can read,
-- carries the one-time token of rag.answer's code, within the sizes migration 0007 caps;
-- web_user: the PostgREST request's web user, if any (rag._web_user).
CREATE OR REPLACE FUNCTION rag._log_answer(entry jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
    price rag.llm_prices;
    per_minute integer := coalesce((SELECT s.value::integer FROM rag.settings AS s
        WHERE s.key = 'answer_log_max_per_minute'), 600);
    claims text := current_setting('request.jwt.claims', true);
    recent bigint;
BEGIN
    -- The limit is the role's, whatever web users it serves: counted without the log's
    -- narrowing to one web user, which a caller could vary to escape it (the setting is
    -- put back at once, and by any error's rollback).
    PERFORM set_config('request.jwt.claims', '', true);
    recent := (SELECT count(*) FROM rag.answer_log AS l WHERE l.asked_by = current_user
        AND l.asked_at > now() - interval '1 minute');
    PERFORM set_config('request.jwt.claims', coalesce(claims, ''), true);
    IF recent >= per_minute THEN
        RETURN NULL;
    END IF;
    SELECT * INTO price FROM rag.llm_prices AS p WHERE p.model = entry ->> 'model';
    INSERT INTO rag.answer_log (
        pipeline, question, answer, mode, model, llm, grounded, problems,
        retrieved_chunk_ids, retrieved_scores, cited_chunk_ids, cited_document_ids,
        cited_sources, prompt_tokens, completion_tokens, cost, currency, timings_ms, total_ms,
        error, answer_token, degraded, web_user
    )
    VALUES (
        entry ->> 'pipeline', entry ->> 'question', entry ->> 'answer',
        entry ->> 'mode', entry ->> 'model', entry ->> 'llm', (entry ->> 'grounded')::boolean,
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'problems')),
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'retrieved_chunk_ids')::bigint),
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'retrieved_scores')::double precision),
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'cited_chunk_ids')::bigint),
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'cited_document_ids')),
        ARRAY(SELECT jsonb_array_elements_text(entry -> 'cited_sources')),
        (entry ->> 'prompt_tokens')::integer, (entry ->> 'completion_tokens')::integer,
        (entry ->> 'prompt_tokens')::numeric * price.prompt_per_million / 1e6
        + (entry ->> 'completion_tokens')::numeric * price.completion_per_million / 1e6,
        price.currency, coalesce(entry -> 'timings_ms', '{}'),
        (entry -> 'timings_ms' ->> 'total')::float8, entry ->> 'error', entry ->> 'token',
        entry ->> 'degraded', rag._web_user()
    )
    RETURNING id INTO new_id;
    PERFORM rag._prune_answer_log();
    RETURN new_id;
END;
$$;

-- rag._answer(...): the PL/Python implementation behind rag.answer; returns the result, or
-- {"error": ...} for the wrapper to raise without a traceback.
CREATE OR REPLACE FUNCTION rag._answer(
    question text, k integer, filter jsonb, pipeline text, model text, options jsonb
)
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask.answering import pipeline as answering
return answering.answer(plpy, question, k, filter, pipeline, model, options)
$$;

-- rag.answer(question, k, filter, pipeline, model, options): answers a question from the k
-- best chunks of a pipeline (rag.search, hybrid) and returns
--   {answer, mode: generated|extractive|no_answer, citations: [{n, chunk_id, document_id,
--    title, source, span}], model, usage: {prompt_tokens, completion_tokens},
--    timings_ms: {embed, search, rerank, generate, total}, grounded, problems, claims,
--    generated_answer, answer_id, log: logged | skipped: why, note, degraded}.
-- degraded: why the passages were found by keyword search (BM25) only (the pipeline's
-- embedder could not embed the question; see rag.search), else null; the note says so too,
-- and so does rag.answer_log.degraded. With search option on_embedder_error 'error'
-- (options => '{"search": {"on_embedder_error": "error"}}', or the pipeline's
-- search_options) the answer fails with 38000 instead. A failing reranker leaves the
-- passages in first-stage order, and the note says so.
-- model: a rag.llms name, or 'extractive'; NULL: the pipeline's answer_options llm, else the
-- default LLM (rag.create_llm), else extractive (offline: retrieved sentences, cited).
-- A generated answer is checked claim by claim (claims: [{text, cited, sources, supported,
-- reason, kind}], and verdict with guard 'judge'): each claim's numbers, dates, quotes,
-- names and most of its words must stand in a passage shown, and its [n] are set to the
-- passages that support it (a wrong or missing [n] is corrected; generated_answer keeps the
-- reply as written). A degenerate reply (repetition, the question restated, longer than its
-- sources, text after a stop sequence: named problems), a claim no passage
-- supports, a reply of citations only or one that restates the question makes grounded
-- false and (guard 'replace', the default) the extractive answer is returned with a note.
-- An LLM that fails (after retries) gives the extractive answer with a note (on_llm_error
-- 'fallback', the default) or an error ('error'). options (over the pipeline's
-- answer_options): llm, guard (replace|flag|judge; judge: one more LLM call judges every
-- claim against its passage, judge_llm and judge_unsupported withhold|drop|flag),
-- on_llm_error (fallback|error),
-- max_context_tokens, prompt
-- ({system, user} with {context} and {question}), search (rag.search options), log (false:
-- not logged), hyde (true: the LLM writes a hypothetical answer whose embedding is searched
-- with; one more LLM call), multi_step (true: the LLM splits the question, each part is
-- retrieved for and the answer comes from the union; one more LLM call and a search per
-- part); both off by default and need an LLM (22023 without one). Every answer is logged
-- in rag.answer_log, except on a hot standby or in a read-only transaction, where it is
-- answered all the same and the result says
-- log: 'skipped: read-only (hot standby)' with answer_id null (docs/scale-out.md).
CREATE OR REPLACE FUNCTION rag.answer(
    question text,
    k integer DEFAULT 5,
    filter jsonb DEFAULT NULL,
    pipeline text DEFAULT NULL,
    model text DEFAULT NULL,
    options jsonb DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    problem text;
    result jsonb;
    state text;
    message text;
    hint text;
BEGIN
    IF question IS NULL OR question !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'rag.answer: question must be a non-empty text, got %',
            coalesce(quote_literal(question), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF length(question) > 10000 THEN
        RAISE EXCEPTION 'rag.answer: question must be at most 10000 characters, got %',
            length(question)
            USING errcode = 'invalid_parameter_value',
            hint = 'Ask about a passage with a short question; rag.search takes longer texts.';
    END IF;
    IF k IS NULL OR k < 1 OR k > 50 THEN
        RAISE EXCEPTION 'rag.answer: k must be between 1 and 50, got %', coalesce(k::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF filter IS NOT NULL AND jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'rag.answer: filter must be a JSON object such as {"lang": "en"}, got %',
            filter
            USING errcode = 'invalid_parameter_value';
    END IF;
    p := rag._pipeline(coalesce(pipeline, rag._default_pipeline()), 'rag.answer');
    PERFORM rag._check_reader(p.name, 'rag.answer');
    IF model IS NOT NULL AND model <> 'extractive'
        AND NOT EXISTS (SELECT 1 FROM rag.llms AS l WHERE l.name = answer.model) THEN
        RAISE EXCEPTION 'rag.answer: model % is not a registered LLM (known: %) or ''extractive''',
            quote_literal(model),
            coalesce((SELECT string_agg(name, ', ' ORDER BY name) FROM rag.llms), 'none')
            USING errcode = 'invalid_parameter_value',
            hint = 'Register one with rag.create_llm.';
    END IF;
    problem := coalesce(
        rag._answer_options_error(options),
        rag._search_error(filter, options -> 'search', p.name)
    );
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'rag.answer: %', problem
            USING errcode = 'invalid_parameter_value';
    END IF;
    result := rag._answer(question, k, filter, p.name, model, options);
    IF result ? 'error' THEN
        -- 38000 for a provider's failure; the body names another state for a bad argument
        -- it can only see there (hyde or multi_step without an LLM: 22023).
        RAISE EXCEPTION 'rag.answer: %', result ->> 'error'
            USING errcode = coalesce(result ->> 'sqlstate', 'external_routine_exception'),
            hint = coalesce(result ->> 'hint', '');
    END IF;
    RETURN result;
EXCEPTION WHEN others OR query_canceled THEN  -- (others leaves out a cancel)
    -- Whatever failed (a provider, a privilege, a cancel), one error shape: no traceback.
    GET STACKED DIAGNOSTICS state = returned_sqlstate, message = message_text,
        hint = pg_exception_hint;
    PERFORM rag._raise_clean('rag.answer', state, message, hint);
END;
$$;

-- rag.format_answer(result): an answer from rag.answer as text, with a numbered source list.
CREATE OR REPLACE FUNCTION rag.format_answer(result jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT result ->> 'answer' || coalesce(
        E'\n\nSources:\n' || string_agg(
            format('[%s] %s (%s)', c ->> 'n', c ->> 'title', c ->> 'source'), E'\n'
            ORDER BY (c ->> 'n')::int
        ),
        ''
    )
    FROM jsonb_array_elements(result -> 'citations') AS c
$$;

-- rag_answer(question): the one-liner. The answer text with its numbered sources, or
-- "I don't know" when the indexed documents do not hold the answer.
CREATE OR REPLACE FUNCTION public.rag_answer(question text)
RETURNS text
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rag.format_answer(rag.answer(question))
$$;

-- rag.answer_sources(question, k, filter, pipeline, model): one row per cited chunk of the
-- answer, for BI tools and joins; answer_id leads to rag.answer_log.
CREATE OR REPLACE FUNCTION rag.answer_sources(
    question text,
    k integer DEFAULT 5,
    filter jsonb DEFAULT NULL,
    pipeline text DEFAULT NULL,
    model text DEFAULT NULL
)
RETURNS TABLE (
    answer_id bigint,
    n integer,
    chunk_id bigint,
    document_id text,
    title text,
    source text,
    span_start integer,
    span_end integer,
    mode text,
    answer text
)
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        (a.r ->> 'answer_id')::bigint,
        (c ->> 'n')::integer,
        (c ->> 'chunk_id')::bigint,
        c ->> 'document_id',
        c ->> 'title',
        c ->> 'source',
        (c -> 'span' ->> 0)::integer,
        (c -> 'span' ->> 1)::integer,
        a.r ->> 'mode',
        a.r ->> 'answer'
    FROM (SELECT rag.answer(question, k, filter, pipeline, model) AS r) AS a
    CROSS JOIN LATERAL jsonb_array_elements(a.r -> 'citations') AS c
$$;

-- rag.feedback(answer_id, helpful, comment): a user's verdict on one of its own answers (an
-- auditor's: on any); returns its id. Runs as the caller, so the log's row-level security
-- decides which answers it sees: an answer that does not exist and one that is not the
-- caller's give the same error.
CREATE OR REPLACE FUNCTION rag.feedback(
    answer_id bigint, helpful boolean, comment text DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF helpful IS NULL THEN
        RAISE EXCEPTION 'rag.feedback: helpful must be true or false, got NULL'
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM rag.answer_log AS l WHERE l.id = feedback.answer_id) THEN
        RAISE EXCEPTION 'rag.feedback: answer % does not exist or is not yours (answer_id from '
            'rag.answer; answers older than the log''s retention are gone)',
            coalesce(answer_id::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    -- At most 10 verdicts per answer from one asker (role and web user): rag_api.feedback
    -- is open to every web user, anonymous ones included, and nothing else bounded what
    -- they store. (A database role inserting rows itself stores them as itself.)
    IF (SELECT count(*) FROM rag.answer_feedback AS f
            WHERE f.answer_id = feedback.answer_id AND f.given_by = current_user
                AND f.web_user IS NOT DISTINCT FROM rag._web_user()) >= 10 THEN
        RAISE EXCEPTION 'rag.feedback: answer % has 10 verdicts from you already', answer_id
            USING errcode = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.answer_feedback (answer_id, helpful, comment, web_user)
    VALUES (answer_id, helpful, left(comment, 10000), rag._web_user())
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;

-- rag.answer_feedback_totals: helpful and unhelpful verdicts per answer (rag.feedback).
CREATE OR REPLACE VIEW rag.answer_feedback_totals AS
SELECT
    answer_id,
    count(*) FILTER (WHERE helpful) AS helpful,
    count(*) FILTER (WHERE NOT helpful) AS unhelpful
FROM rag.answer_feedback
GROUP BY answer_id;

-- rag.answers_daily: per day and pipeline: answers, how they were made, latency, tokens, cost,
-- ungrounded generations caught, feedback, and answers found by keyword search only because
-- the embedder was down (degraded). Counts are bigint and measures double precision, never
-- numeric: drivers (psycopg, JDBC, pandas) hand numeric over as decimals, not numbers
-- (migration 0014 dropped the numeric version).
CREATE OR REPLACE VIEW rag.answers_daily AS
SELECT
    date_trunc('day', l.asked_at)::date AS day,
    l.pipeline,
    count(*) AS answers,
    count(*) FILTER (WHERE l.mode = 'generated') AS generated,
    count(*) FILTER (WHERE l.mode = 'extractive') AS extractive,
    count(*) FILTER (WHERE l.mode = 'no_answer') AS no_answer,
    count(*) FILTER (WHERE NOT l.grounded) AS ungrounded,
    count(*) FILTER (WHERE l.error IS NOT NULL) AS llm_errors,
    round(avg(l.total_ms)::numeric, 1)::double precision AS avg_ms,
    round((percentile_cont(0.95) WITHIN GROUP (ORDER BY l.total_ms))::numeric, 1)
    ::double precision AS p95_ms,
    coalesce(sum(l.prompt_tokens), 0)::bigint AS prompt_tokens,
    coalesce(sum(l.completion_tokens), 0)::bigint AS completion_tokens,
    sum(l.cost)::double precision AS cost,
    sum(f.helpful)::bigint AS helpful,
    sum(f.unhelpful)::bigint AS unhelpful,
    count(*) FILTER (WHERE l.degraded IS NOT NULL) AS degraded
FROM rag.answer_log AS l
LEFT JOIN rag.answer_feedback_totals AS f ON l.id = f.answer_id
GROUP BY date_trunc('day', l.asked_at)::date, l.pipeline;

-- rag.top_unanswered: questions that ended in "I don't know", most asked first: the gaps in
-- the documents. Questions are grouped case- and space-insensitively.
CREATE OR REPLACE VIEW rag.top_unanswered AS
SELECT
    l.pipeline,
    lower(regexp_replace(btrim(l.question), '\s+', ' ', 'g')) AS question,
    count(*) AS times_asked,
    count(DISTINCT l.asked_by) AS askers,
    min(l.asked_at) AS first_asked,
    max(l.asked_at) AS last_asked
FROM rag.answer_log AS l
WHERE l.mode = 'no_answer'
GROUP BY l.pipeline, lower(regexp_replace(btrim(l.question), '\s+', ' ', 'g'))
ORDER BY times_asked DESC, last_asked DESC;

-- rag.document_usage: how often each document was cited in answers, and by how many
-- distinct questions; documents never cited do not appear.
CREATE OR REPLACE VIEW rag.document_usage AS
SELECT
    l.pipeline,
    d.document_id,
    max(d.source) AS source,
    count(DISTINCT l.id) AS answers,
    count(DISTINCT lower(l.question)) AS questions,
    coalesce(sum(f.helpful), 0)::bigint AS helpful_feedback,
    coalesce(sum(f.unhelpful), 0)::bigint AS unhelpful_feedback,
    max(l.asked_at) AS last_cited
FROM rag.answer_log AS l
CROSS JOIN
    LATERAL (
        -- A document cited through two of its chunks counts once per answer.
        SELECT DISTINCT
            u.document_id,
            u.source
        FROM unnest(l.cited_document_ids, l.cited_sources) AS u (document_id, source)
    ) AS d
LEFT JOIN rag.answer_feedback_totals AS f ON l.id = f.answer_id
GROUP BY l.pipeline, d.document_id
ORDER BY answers DESC;
