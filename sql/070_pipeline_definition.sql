-- Defining pipelines: rag.create_pipeline, rag.alter_pipeline, rag.drop_pipeline and the
-- checks they share.
-- (Over 400 lines: the three entry points share their checks, which would otherwise be
-- split from what they check.)

-- rag._pipeline(name): the pipeline's row, or a clear error naming the known pipelines.
CREATE OR REPLACE FUNCTION rag._pipeline(pipeline_name text, caller text)
RETURNS rag.pipelines
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
BEGIN
    SELECT * INTO p FROM rag.pipelines WHERE name = pipeline_name;
    IF NOT found THEN
        RAISE EXCEPTION '%: pipeline % does not exist (known: %)', caller,
            coalesce(quote_literal(pipeline_name), 'NULL'),
            coalesce((SELECT string_agg(name, ', ' ORDER BY name) FROM rag.pipelines), 'none')
            USING errcode = 'invalid_parameter_value';
    END IF;
    RETURN p;
END;
$$;

-- rag._column_sql(source, column, what): the quoted reference s."column", after checking
-- that the column exists (and, for content, that it is text-like).
CREATE OR REPLACE FUNCTION rag._column_sql(
    source regclass, column_name text, what text, text_like boolean
)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    category "char";
BEGIN
    SELECT t.typcategory INTO category
    FROM pg_attribute AS a
    INNER JOIN pg_type AS t ON a.atttypid = t.oid
    WHERE a.attrelid = source AND a.attname = column_name AND a.attnum > 0
        AND NOT a.attisdropped;
    IF NOT found THEN
        RAISE EXCEPTION 'rag.create_pipeline: % column % does not exist in %',
            what, quote_ident(column_name), source
            USING errcode = 'undefined_column';
    END IF;
    IF text_like AND category <> 'S' THEN
        RAISE EXCEPTION 'rag.create_pipeline: % column % of % must be text-like '
            '(text, varchar, char), not %', what, quote_ident(column_name), source,
            format_type(
                (SELECT atttypid FROM pg_attribute WHERE attrelid = source
                    AND attname = column_name), NULL
            )
            USING errcode = 'datatype_mismatch';
    END IF;
    RETURN format('s.%I', column_name);
END;
$$;

DROP FUNCTION IF EXISTS rag._expression_type(regclass, text);
DROP FUNCTION IF EXISTS rag._metadata_sql(regclass, text[]);

-- rag._metadata_parts(source, entries, caller): a chunk's metadata from the source row "s",
-- one SQL fragment per entry, jsonb objects first (so named keys win a clash). An entry is
-- a column name (the column under its own name as key, except that a jsonb column holding an
-- object contributes its keys, so rag.search filters reach them directly: {"team": "db"},
-- not {"metadata": {"team": "db"}}) or 'expression AS key' (any SQL expression over the
-- row's columns). `what` names the entry for rag._bind_source, which parses each one as the
-- source's owner, so a misspelt column or a bad expression is an error naming it. Nothing
-- is evaluated here.
CREATE OR REPLACE FUNCTION rag._metadata_parts(
    source regclass, entries text[], caller text DEFAULT 'rag.create_pipeline'
)
RETURNS TABLE (fragment text, what text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry text;
    column_type oid;
    parsed text[];
    entry_key text;
    later text[] := '{}';
    later_what text[] := '{}';
BEGIN
    FOREACH entry IN ARRAY coalesce(entries, '{}') LOOP
        IF entry IS NULL OR btrim(entry) = '' THEN
            RAISE EXCEPTION '%: metadata entries must be column names or ''expression AS '
                'key'', got %', caller, coalesce(quote_literal(entry), 'NULL')
                USING errcode = 'invalid_parameter_value';
        END IF;
        SELECT a.atttypid INTO column_type FROM pg_attribute AS a
        WHERE a.attrelid = source AND a.attname = entry AND a.attnum > 0 AND NOT a.attisdropped;
        IF found AND column_type = 'jsonb'::regtype THEN
            fragment := format('CASE WHEN jsonb_typeof(s.%1$I) = ''object'' THEN '
                's.%1$I ELSE jsonb_build_object(%2$L, s.%1$I) END', entry, entry);
            what := format('metadata column %I', entry);
            RETURN NEXT;
            CONTINUE;
        ELSIF found THEN
            later := later || format('jsonb_build_object(%L, s.%I)', entry, entry);
            later_what := later_what || format('metadata column %I', entry);
            CONTINUE;
        END IF;
        parsed := regexp_match(entry,
            '^\s*(.+?)\s+[Aa][Ss]\s+([A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")\s*$');
        IF parsed IS NULL THEN
            IF entry ~ '^\s*([A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")\s*$' THEN
                RAISE EXCEPTION '%: metadata column "%" does not exist in %', caller, entry,
                    source
                    USING errcode = 'undefined_column';
            END IF;
            RAISE EXCEPTION '%: metadata entry % is neither a column of % nor '
                '''expression AS key''', caller, quote_literal(entry), source
                USING errcode = 'invalid_parameter_value';
        END IF;
        entry_key := parsed[2];
        IF entry_key LIKE '"%' THEN
            entry_key := replace(substr(entry_key, 2, length(entry_key) - 2), '""', '"');
        END IF;
        later := later || format('jsonb_build_object(%L, (%s))', entry_key, parsed[1]);
        later_what := later_what || format('metadata expression %s for key %s',
            quote_literal(parsed[1]), quote_literal(entry_key));
    END LOOP;
    RETURN QUERY SELECT l.f, l.w FROM unnest(later, later_what) WITH ORDINALITY AS l (f, w, n)
        ORDER BY l.n;
END;
$$;

-- rag._metadata_sql(source, entries, caller): the SQL building a chunk's metadata (the
-- parts of rag._metadata_parts, joined).
CREATE OR REPLACE FUNCTION rag._metadata_sql(
    source regclass, entries text[], caller text DEFAULT 'rag.create_pipeline'
)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(string_agg(m.fragment, ' || '), '''{}''::jsonb')
    FROM rag._metadata_parts(source, entries, caller) AS m
$$;

-- rag._fragment_checks(pipeline, metadata, caller): what rag._bind_source parses as the
-- source's owner: the content (it must give text), the title, and each metadata entry by
-- itself (or the whole metadata, when `metadata` is NULL), so that an error names it.
CREATE OR REPLACE FUNCTION rag._fragment_checks(pipeline text, metadata text[], caller text)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_array(
        jsonb_build_array(p.content_sql, format('content expression %s',
            regexp_replace(p.content_sql, '^\((.*)\)$', '\1')), 'text'),
        jsonb_build_array(p.title_sql, 'title', 'text'))
        || CASE WHEN metadata IS NULL
            THEN jsonb_build_array(jsonb_build_array(p.metadata_sql, 'metadata', 'jsonb'))
            ELSE coalesce((SELECT jsonb_agg(jsonb_build_array(m.fragment, m.what, 'jsonb'))
                FROM rag._metadata_parts(p.source, metadata, caller) AS m), '[]') END
    FROM rag.pipelines AS p WHERE p.name = pipeline
$$;

-- rag._define_pipeline(...): the pipeline's row, its chunk table, view, capture and
-- visibility functions and access rules, all owned by pgask_owner (SECURITY DEFINER);
-- rag.create_pipeline has checked the arguments. Executable by pgask_owner's members.
CREATE OR REPLACE FUNCTION rag._define_pipeline(
    name text, source regclass, mode text, key_attnums smallint[], content_sql text,
    title_sql text, metadata_sql text, chunker jsonb, embedder text, language regconfig
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e rag.embedders := (SELECT x FROM rag.embedders AS x WHERE x.name = embedder);
BEGIN
    -- (Executable by admins directly too: the checks of rag.create_pipeline that matter for
    -- privileges are made again here.)
    PERFORM rag._require_admin('rag.create_pipeline');
    PERFORM rag._require_member('rag.create_pipeline', source);
    INSERT INTO rag.pipelines (
        name, source, mode, key_attnums, key_sql, key_join_sql, content_sql, title_sql,
        metadata_sql, chunker, embedder, embedding_model, dimensions, language, source_name,
        source_columns, shape_digest
    )
    VALUES (
        name, source, mode, key_attnums, rag._key_text_sql(source, key_attnums),
        coalesce(rag._key_match_sql(source, key_attnums, 'k.document_id'), ''), content_sql,
        title_sql, metadata_sql, coalesce(chunker, '{}'::jsonb), e.name, e.model, e.dimensions,
        coalesce(language, 'english'), source::text,
        rag._referenced_columns(source, ARRAY[content_sql, title_sql, metadata_sql]),
        rag._source_shape(source, rag._referenced_columns(source,
            ARRAY[content_sql, title_sql, metadata_sql]))
    );
    INSERT INTO rag.pipeline_stats (pipeline) VALUES (name);
    PERFORM rag._install_capture(name);
    PERFORM rag._install_visibility(name);  -- (the chunk table's policy may call it)
    PERFORM rag._create_store(name, 1, e.dimensions);
    PERFORM rag._point_view(name);
END;
$$;
COMMENT ON FUNCTION rag._define_pipeline(
    text, regclass, text, smallint[], text, text, text, jsonb, text, regconfig
) IS 'SECURITY DEFINER: a pipeline''s tables and functions belong to pgask_owner';

-- rag._create_pipeline(...): shared by both rag.create_pipeline forms; content_sql is a
-- column of the source or an expression over its row "s" (parsed as the source's owner by
-- rag._bind_source). Defines the pipeline, binds it to its source as the source's owner,
-- and asks the workers to embed every existing row (whatever the mode): nothing of the
-- source's is evaluated in this transaction.
CREATE OR REPLACE FUNCTION rag._create_pipeline(
    name text,
    source regclass,
    content_sql text,
    title text,
    metadata text[],
    chunker jsonb,
    embedder text,
    mode text,
    language regconfig
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_attnums smallint[];
    untrusted text;
    title_sql text := '''''::text';
    metadata_sql text := '''{}''::jsonb';
    chunker_error text;
    problem text;
BEGIN
    IF NOT EXISTS (SELECT FROM rag.embedders AS x WHERE x.name = embedder) THEN
        RAISE EXCEPTION 'rag.create_pipeline: embedder % is not registered '
            '(see rag.create_embedder; ''local'' is the offline model)',
            coalesce(quote_literal(embedder), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF mode IS NULL OR mode NOT IN ('async', 'sync') THEN
        RAISE EXCEPTION 'rag.create_pipeline: mode must be ''async'' or ''sync'', got %',
            coalesce(quote_literal(mode), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    chunker_error := rag._chunker_error(coalesce(chunker, '{}'::jsonb));
    IF chunker_error IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_pipeline: %', chunker_error
            USING errcode = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(k.attnum::smallint ORDER BY k.ord) INTO key_attnums
    FROM pg_index AS i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord)
    WHERE i.indrelid = source AND i.indisprimary;
    SELECT string_agg(format('%I (%s)', k.name, format_type(k.type_oid, NULL)), ', ')
    INTO untrusted
    FROM rag._key_columns(source, key_attnums) AS k WHERE NOT k.trusted;
    IF untrusted IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_pipeline: the primary key of % has a type that roles other '
            'than a superuser control: %', source, untrusted
            USING errcode = 'feature_not_supported',
            hint = 'Every role that searches compares keys of that type, and would run its '
                'owner''s code: key the table by a built-in type (a domain over one is fine).';
    END IF;
    IF title IS NOT NULL THEN
        title_sql := format('coalesce((%s)::text, '''')',
            rag._column_sql(source, title, 'title', false));
    END IF;
    IF metadata IS NOT NULL THEN
        metadata_sql := rag._metadata_sql(source, metadata, 'rag.create_pipeline');
    END IF;
    PERFORM rag._define_pipeline(name, source, mode, key_attnums, content_sql, title_sql,
        metadata_sql, chunker, embedder, language);
    PERFORM rag._bind_source(name, 'rag.create_pipeline',
        rag._fragment_checks(name, metadata, 'rag.create_pipeline'));
    -- Backfill: a request to check every row, for the workers (one append: reading every
    -- key here would hold the table's writers, locked out by the new triggers until
    -- commit, for as long as that takes).
    problem := rag._refresh_pipeline(name);
    IF problem IS NOT NULL THEN  -- (forced row-level security, say)
        RAISE EXCEPTION 'rag.create_pipeline: %', problem USING errcode = 'feature_not_supported';
    END IF;
    -- (An empty table, no pages at all, needs none.)
    PERFORM rag._request_check(name, 'all')
    WHERE NOT EXISTS (SELECT FROM rag.inbox AS i WHERE i.pipeline = name AND i.scope = 'all')
        AND (SELECT sum(pg_relation_size(t.relid)) FROM rag._partition_tree(source) AS t (relid))
            > 0;
END;
$$;

-- rag.create_pipeline(name, source, content, ...): keeps the chunks and embeddings of every
-- row of `source` fresh. content is a column name or an SQL expression over the row's
-- columns (e.g. 'subject || E''\n\n'' || body'); title and metadata name columns. The
-- pipeline's SQL runs as the source table's owner, so the caller must be a member of that
-- role (or a superuser) and of pgask_owner. Creates the chunk table rag.<name>_chunks_1 with
-- its HNSW index, the view rag.<name>_chunks, the capture triggers (on every partition of a
-- partitioned source), and queues every existing row. mode 'async' (default): writes only
-- record which rows changed, and `pgask worker` or CALL rag.process_queue() embeds; 'sync':
-- the write's transaction embeds them too (fast local models only), leaving them queued if
-- that fails. Sources pgask cannot follow (views, partitions, inheritance, no primary key)
-- are refused with the reason.
CREATE OR REPLACE FUNCTION rag.create_pipeline(
    name text,
    source regclass,
    content text,
    title text DEFAULT NULL,
    metadata text[] DEFAULT NULL,
    chunker jsonb DEFAULT '{}'::jsonb,
    embedder text DEFAULT 'local',
    mode text DEFAULT 'async',
    language regconfig DEFAULT 'english'
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    content_sql text;
    problem text;
BEGIN
    PERFORM rag._require_admin('rag.create_pipeline');
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'rag.create_pipeline: name must be a lowercase identifier (a-z, 0-9, _; '
            'at most 40 characters), got %', coalesce(quote_literal(name), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM rag.pipelines AS p WHERE p.name = create_pipeline.name) THEN
        RAISE EXCEPTION 'rag.create_pipeline: pipeline % already exists '
            '(rag.alter_pipeline changes it; rag.drop_pipeline removes it)', name
            USING errcode = 'duplicate_object';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION 'rag.create_pipeline: source must be a table'
            USING errcode = 'invalid_parameter_value';
    END IF;
    problem := rag._shape_problem(source);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_pipeline: %', problem
            USING errcode = CASE
                WHEN (SELECT relkind FROM pg_class WHERE oid = source) NOT IN ('r', 'p')
                    THEN 'wrong_object_type'
                WHEN problem LIKE '%no primary key%' THEN 'invalid_table_definition'
                ELSE 'feature_not_supported' END;
    END IF;
    IF content IS NULL OR btrim(content) = '' THEN
        RAISE EXCEPTION 'rag.create_pipeline: content must name a column or be an SQL '
            'expression over the columns of %', source
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = source AND attname = content AND attnum > 0 AND NOT attisdropped
    ) THEN
        content_sql := rag._column_sql(source, content, 'content', true);
    ELSE
        content_sql := format('(%s)', content);
    END IF;
    PERFORM rag._create_pipeline(name, source, content_sql, title, metadata, chunker,
        embedder, mode, language);
END;
$$;

-- rag.create_pipeline(name, source, content text[], ...): content from several columns,
-- joined with blank lines (NULL columns skipped).
CREATE OR REPLACE FUNCTION rag.create_pipeline(
    name text,
    source regclass,
    content text[],
    title text DEFAULT NULL,
    metadata text[] DEFAULT NULL,
    chunker jsonb DEFAULT '{}'::jsonb,
    embedder text DEFAULT 'local',
    mode text DEFAULT 'async',
    language regconfig DEFAULT 'english'
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    content_sql text;
BEGIN
    IF content IS NULL OR cardinality(content) = 0 THEN
        RAISE EXCEPTION 'rag.create_pipeline: content must name at least one column'
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF cardinality(content) = 1 THEN
        PERFORM rag.create_pipeline(name, source, content[1], title, metadata, chunker,
            embedder, mode, language);
        RETURN;
    END IF;
    PERFORM rag._require_admin('rag.create_pipeline');
    SELECT format('concat_ws(E''\n\n'', %s)', string_agg(
        rag._column_sql(source, c, 'content', true), ', ' ORDER BY n
    ))
    INTO content_sql
    FROM unnest(content) WITH ORDINALITY AS u (c, n);
    PERFORM rag.create_pipeline(name, source, '(' || content_sql || ')', title, metadata,
        chunker, embedder, mode, language);
END;
$$;

-- rag._chunker_error(config): NULL when a chunker configuration is valid, else why not.
CREATE OR REPLACE FUNCTION rag._chunker_error(config jsonb)
RETURNS text
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import sqlbridge
return sqlbridge.chunker_error(config)
$$;

-- rag._drop_pipeline_objects(name): what a pipeline owns, gone: its capture function with
-- every trigger that calls it (on the source and its partitions, whoever owns them: a
-- dropped function takes its triggers along), its reader (in rag_source, whose owner may
-- drop it), view, chunk tables, visibility function, statistics, queue and captured writes.
-- Dropping a trigger locks its table: the drop waits at most 50 ms at a time in that lock's
-- queue (the table's writers wait behind it), tries again for about 10 seconds, then raises
-- 55P03. SECURITY DEFINER: all of it belongs to pgask_owner or lives in its schemas.
CREATE OR REPLACE FUNCTION rag._drop_pipeline_objects(name text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may already be gone is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.drop_pipeline');
    embedding_set integer;
    previous_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM rag._require_admin('rag.drop_pipeline');
    FOR attempt IN 1..100 LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '50ms', true);
            EXECUTE format('DROP FUNCTION IF EXISTS rag.%I() CASCADE',
                'pgask_' || p.name || '_capture');
            IF p.reader IS NOT NULL AND EXISTS (SELECT FROM pg_proc AS f WHERE f.oid = p.reader)
            THEN
                EXECUTE format('DROP FUNCTION %s', p.reader::regprocedure);
            END IF;
            EXECUTE format('DROP VIEW IF EXISTS rag.%I', p.name || '_chunks');
            FOREACH embedding_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL)
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS rag.%I', rag._store(p.name, embedding_set));
                PERFORM rag._forget_store(rag._store(p.name, embedding_set));
            END LOOP;
            EXECUTE format('DROP FUNCTION IF EXISTS rag.%I(text)', 'pgask_' || p.name || '_visible');
            PERFORM set_config('lock_timeout', previous_timeout, true);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF attempt = 100 THEN
                RAISE EXCEPTION 'rag.drop_pipeline: pipeline %''s tables (%, its chunk tables) '
                    'are in use by other transactions; pgask does not make their writers wait: '
                    'try again when they end', p.name, p.source
                    USING errcode = 'lock_not_available';
            END IF;
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
    DELETE FROM rag.pipelines AS x WHERE x.name = p.name;
    -- rag.queue's rows go with the pipeline (foreign key); the inbox has none.
    DELETE FROM rag.inbox AS i WHERE i.pipeline = p.name;
END;
$$;
COMMENT ON FUNCTION rag._drop_pipeline_objects(text) IS
'SECURITY DEFINER: a pipeline''s objects belong to pgask_owner or live in its schemas';

-- rag.drop_pipeline(name): removes a pipeline: triggers, reader, chunk tables, view, queue.
-- Works for broken pipelines too, and needs no privilege on the source table.
CREATE OR REPLACE FUNCTION rag.drop_pipeline(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.drop_pipeline');
BEGIN
    PERFORM rag._require_admin('rag.drop_pipeline');
    -- A scheduled job would fail every run once the pipeline is gone (rag.schedule).
    PERFORM rag.unschedule(p.name);
    PERFORM rag._drop_pipeline_objects(p.name);
END;
$$;

-- rag._update_pipeline(name, changes): writes rag.alter_pipeline's checked changes (a JSON
-- object of the columns that change) to the pipeline's row, for an admin; new metadata SQL
-- only for a member of the source owner's role (it runs as that owner). SECURITY DEFINER:
-- rag.pipelines belongs to pgask_owner, and no other role may write it directly.
CREATE OR REPLACE FUNCTION rag._update_pipeline(name text, changes jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.alter_pipeline');
BEGIN
    PERFORM rag._require_admin('rag.alter_pipeline');
    IF changes ? 'metadata_sql' THEN
        PERFORM rag._require_member('rag.alter_pipeline', p.source);
    END IF;
    IF EXISTS (SELECT FROM jsonb_object_keys(changes) AS k (key) WHERE k.key NOT IN ('chunker',
            'metadata_sql', 'mode', 'max_attempts', 'retry_base_seconds', 'retry_max_seconds',
            'language', 'search_options', 'answer_options')) THEN
        RAISE EXCEPTION 'rag._update_pipeline: unknown change in %', changes
            USING errcode = 'invalid_parameter_value';
    END IF;
    UPDATE rag.pipelines AS x SET
        chunker = coalesce(changes -> 'chunker', x.chunker),
        metadata_sql = coalesce(changes ->> 'metadata_sql', x.metadata_sql),
        mode = coalesce(changes ->> 'mode', x.mode),
        max_attempts = coalesce((changes ->> 'max_attempts')::integer, x.max_attempts),
        retry_base_seconds = coalesce((changes ->> 'retry_base_seconds')::double precision,
            x.retry_base_seconds),
        retry_max_seconds = coalesce((changes ->> 'retry_max_seconds')::double precision,
            x.retry_max_seconds),
        language = coalesce((changes ->> 'language')::regconfig, x.language),
        search_options = coalesce(changes -> 'search_options', x.search_options),
        answer_options = coalesce(changes -> 'answer_options', x.answer_options)
    WHERE x.name = p.name;
END;
$$;
COMMENT ON FUNCTION rag._update_pipeline(text, jsonb) IS
'SECURITY DEFINER: rag.pipelines belongs to pgask_owner; admins change it only through this';

-- rag.alter_pipeline(name, chunker, metadata, mode, max_attempts, retry_base_seconds,
-- retry_max_seconds, language, search_options): changes a pipeline without dropping it (NULL
-- keeps a setting). A new chunker or metadata re-queues every row: chunks are rebuilt in the
-- background while the old ones keep answering, and chunks whose text is unchanged keep
-- their vectors (no embedding cost). A new language (a text search configuration such as
-- 'simple' or 'german') rebuilds the keyword index at once, locking the chunk table while it
-- is rewritten. search_options: the pipeline's defaults for rag.search's options;
-- answer_options: for rag.answer's (llm, prompt, guard, ...).
CREATE OR REPLACE FUNCTION rag.alter_pipeline(
    name text,
    chunker jsonb DEFAULT NULL,
    metadata text[] DEFAULT NULL,
    mode text DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    retry_base_seconds double precision DEFAULT NULL,
    retry_max_seconds double precision DEFAULT NULL,
    language regconfig DEFAULT NULL,
    search_options jsonb DEFAULT NULL,
    answer_options jsonb DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.alter_pipeline');
    chunker_error text;
    new_metadata_sql text;
    broken text;
BEGIN
    PERFORM rag._require_admin('rag.alter_pipeline');
    IF mode IS NOT NULL AND mode NOT IN ('async', 'sync') THEN
        RAISE EXCEPTION 'rag.alter_pipeline: mode must be ''async'' or ''sync'', got %',
            quote_literal(mode)
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts < 1 THEN
        RAISE EXCEPTION 'rag.alter_pipeline: max_attempts must be >= 1, got %', max_attempts
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF retry_base_seconds < 0 OR retry_max_seconds < 0 THEN
        RAISE EXCEPTION 'rag.alter_pipeline: retry_base_seconds and retry_max_seconds must be '
            '>= 0, got % and %', retry_base_seconds, retry_max_seconds
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF chunker IS NOT NULL THEN
        chunker_error := rag._chunker_error(chunker);
        IF chunker_error IS NOT NULL THEN
            RAISE EXCEPTION 'rag.alter_pipeline: %', chunker_error
                USING errcode = 'invalid_parameter_value';
        END IF;
    END IF;
    IF search_options IS NOT NULL THEN
        chunker_error := rag._search_error(NULL, search_options);
        IF chunker_error IS NOT NULL THEN
            RAISE EXCEPTION 'rag.alter_pipeline: search_options: %', chunker_error
                USING errcode = 'invalid_parameter_value';
        END IF;
    END IF;
    IF answer_options IS NOT NULL THEN
        chunker_error := rag._answer_options_error(answer_options);
        IF chunker_error IS NOT NULL THEN
            RAISE EXCEPTION 'rag.alter_pipeline: answer_options: %',
                replace(chunker_error, 'options: ', '')
                USING errcode = 'invalid_parameter_value';
        END IF;
    END IF;
    IF metadata IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = p.source) THEN
            RAISE EXCEPTION 'rag.alter_pipeline: pipeline % is broken (%): its metadata cannot '
                'change; rag.drop_pipeline removes it', p.name, p.broken
                USING errcode = 'invalid_parameter_value';
        END IF;
        new_metadata_sql := rag._metadata_sql(p.source, metadata, 'rag.alter_pipeline');
    END IF;
    PERFORM rag._update_pipeline(p.name, jsonb_strip_nulls(jsonb_build_object(
        'chunker', chunker, 'metadata_sql', new_metadata_sql, 'mode', mode,
        'max_attempts', max_attempts, 'retry_base_seconds', retry_base_seconds,
        'retry_max_seconds', retry_max_seconds, 'language', language::text,
        'search_options', search_options, 'answer_options', answer_options)));
    IF language IS NOT NULL AND language <> p.language THEN
        PERFORM rag._sync_keyword_index(p.name, s.embedding_set)
        FROM unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
    END IF;
    -- A new metadata, or a reader that no longer fits (the source has a new owner, or it
    -- was dropped): bound again, as the source's owner, by a member of that role.
    IF EXISTS (SELECT FROM pg_class WHERE oid = p.source)
            AND (new_metadata_sql IS NOT NULL OR rag._reader_problem(p.name) IS NOT NULL) THEN
        PERFORM rag._bind_source(p.name, 'rag.alter_pipeline',
            rag._fragment_checks(p.name, metadata, 'rag.alter_pipeline'));
    ELSIF EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source
            AND pg_has_role(current_user, c.relowner, 'USAGE')) THEN
        -- Capture triggers dropped or disabled by the table's owner: put back, as the owner.
        PERFORM rag._attach_capture(p.name);
    END IF;
    -- Follows the source, reinstalls the capture, or says why it cannot (a broken pipeline
    -- whose new settings make it whole again is repaired and every row checked again).
    broken := rag._refresh_pipeline(p.name);
    IF broken IS NULL AND (
        (chunker IS NOT NULL AND chunker IS DISTINCT FROM p.chunker)
        OR (new_metadata_sql IS NOT NULL AND new_metadata_sql IS DISTINCT FROM p.metadata_sql)
    ) THEN
        PERFORM rag._reconcile(p.name, 'all');
    END IF;
END;
$$;
