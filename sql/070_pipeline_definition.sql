-- Defining pipelines: rag.create_pipeline, rag.alter_pipeline, rag.drop_pipeline and the
-- checks they share.

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

-- rag._expression_type(source, expression): the type of an SQL expression over the source
-- row "s"; raises the parser's error (naming the bad column) when it is not valid.
CREATE OR REPLACE FUNCTION rag._expression_type(source regclass, expression text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result text;
BEGIN
    -- The outer join yields one all-NULL row, so pg_typeof sees the expression's type
    -- without reading the table.
    EXECUTE format(
        'SELECT pg_typeof(%s)::text FROM (SELECT 1) AS one'
        ' LEFT JOIN (SELECT * FROM %s LIMIT 0) AS s ON true',
        expression, source
    ) INTO result;
    RETURN result;
END;
$$;

-- rag._metadata_sql(source, entries, caller): the SQL building a chunk's metadata from the
-- source row "s". An entry is a column name (the column under its own name as key, except
-- that a jsonb column holding an object contributes its keys, so rag.search filters reach
-- them directly: {"team": "db"}, not {"metadata": {"team": "db"}}) or 'expression AS key'
-- (any SQL expression over the row's columns). Every entry is checked here, so a misspelt
-- column or a bad expression is an error naming it, never a silently empty metadata.
-- jsonb objects come first, so named keys win a clash.
DROP FUNCTION IF EXISTS rag._metadata_sql(regclass, text[]);
CREATE OR REPLACE FUNCTION rag._metadata_sql(
    source regclass, entries text[], caller text DEFAULT 'rag.create_pipeline'
)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry text;
    column_type oid;
    parts text[] := '{}';
    objects text[] := '{}';
    parsed text[];
    entry_key text;
BEGIN
    FOREACH entry IN ARRAY entries LOOP
        IF entry IS NULL OR btrim(entry) = '' THEN
            RAISE EXCEPTION '%: metadata entries must be column names or ''expression AS '
                'key'', got %', caller, coalesce(quote_literal(entry), 'NULL')
                USING errcode = 'invalid_parameter_value';
        END IF;
        SELECT a.atttypid INTO column_type FROM pg_attribute AS a
        WHERE a.attrelid = source AND a.attname = entry AND a.attnum > 0 AND NOT a.attisdropped;
        IF found AND column_type = 'jsonb'::regtype THEN
            objects := objects || format('CASE WHEN jsonb_typeof(s.%1$I) = ''object'' THEN '
                's.%1$I ELSE jsonb_build_object(%2$L, s.%1$I) END', entry, entry);
            CONTINUE;
        ELSIF found THEN
            parts := parts || format('jsonb_build_object(%L, s.%I)', entry, entry);
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
        BEGIN
            PERFORM rag._expression_type(source, format('(%s)', parsed[1]));
        EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function
            OR undefined_table OR datatype_mismatch THEN
            RAISE EXCEPTION '%: metadata expression % for key %: %', caller,
                quote_literal(parsed[1]), quote_literal(entry_key), sqlerrm
                USING errcode = sqlstate;
        END;
        parts := parts || format('jsonb_build_object(%L, (%s))', entry_key, parsed[1]);
    END LOOP;
    RETURN coalesce(nullif(array_to_string(objects || parts, ' || '), ''), '''{}''::jsonb');
END;
$$;

-- rag._create_pipeline(...): shared by both rag.create_pipeline forms; content_sql is an
-- expression over "s" already checked by the caller.
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
    e rag.embedders;
    key_columns text[];
    key_types text[];
    key_sql text;
    key_join_sql text;
    title_sql text := '''''::text';
    metadata_sql text := '''{}''::jsonb';
    chunker_error text;
BEGIN
    SELECT * INTO e FROM rag.embedders AS x WHERE x.name = embedder;
    IF NOT found THEN
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

    SELECT
        array_agg(a.attname::text ORDER BY k.ord),
        array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
    INTO key_columns, key_types
    FROM pg_index AS i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord)
    INNER JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = source AND i.indisprimary;
    IF key_columns IS NULL THEN
        RAISE EXCEPTION 'rag.create_pipeline: table % has no primary key; chunks are tied '
            'to their row by it', source
            USING errcode = 'invalid_table_definition';
    END IF;
    IF cardinality(key_columns) = 1 THEN
        key_sql := format('(s.%I)::text', key_columns[1]);
        key_join_sql := format('s.%I = k.document_id::%s', key_columns[1], key_types[1]);
    ELSE
        SELECT
            format('jsonb_build_array(%s)::text', string_agg(format('s.%I', c), ', ' ORDER BY n)),
            format('(%s) = (%s)',
                string_agg(format('s.%I', c), ', ' ORDER BY n),
                string_agg(format('(k.document_id::jsonb ->> %s)::%s', n - 1, key_types[n]), ', '
                    ORDER BY n))
        INTO key_sql, key_join_sql
        FROM unnest(key_columns) WITH ORDINALITY AS u (c, n);
    END IF;

    IF title IS NOT NULL THEN
        title_sql := format('coalesce((%s)::text, '''')',
            rag._column_sql(source, title, 'title', false));
    END IF;
    IF metadata IS NOT NULL THEN
        metadata_sql := rag._metadata_sql(source, metadata, 'rag.create_pipeline');
    END IF;

    INSERT INTO rag.pipelines (
        name, source, mode, key_sql, key_join_sql, content_sql, title_sql, metadata_sql,
        chunker, embedder, embedding_model, dimensions, language
    )
    VALUES (
        name, source, mode, key_sql, key_join_sql, content_sql, title_sql, metadata_sql,
        coalesce(chunker, '{}'::jsonb), e.name, e.model, e.dimensions,
        coalesce(language, 'english')
    );
    INSERT INTO rag.pipeline_stats (pipeline) VALUES (name);
    PERFORM rag._create_store(name, 1, e.dimensions);
    PERFORM rag._point_view(name);

    -- Records the source columns the fragments use (for DDL on the source) and installs
    -- the capture triggers.
    PERFORM rag._refresh_pipeline(name);
    -- Backfill: every existing row is queued, whatever the mode.
    EXECUTE format('SELECT rag._enqueue(%L, array_agg(%s)) FROM %s AS s',
        name, key_sql, source);
END;
$$;

-- rag.create_pipeline(name, source, content, ...): keeps the chunks and embeddings of every
-- row of `source` fresh. content is a column name or an SQL expression over the row's
-- columns (e.g. 'subject || E''\n\n'' || body'); title and metadata name columns. Creates
-- the chunk table rag.<name>_chunks_1 with its HNSW index, the view rag.<name>_chunks, the
-- triggers, and queues every existing row. mode 'async' (default): writes only enqueue, and
-- `pgask worker` or CALL rag.process_queue() embeds; 'sync': the trigger embeds in the
-- writer's transaction (fast local models only), queueing instead if the embedder fails.
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
    content_type text;
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
    IF (SELECT relkind FROM pg_class WHERE oid = source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'rag.create_pipeline: source % is not a table', source
            USING errcode = 'wrong_object_type';
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
        content_type := rag._expression_type(source, format('(%s)', content));
        IF content_type NOT IN ('text', 'character varying', 'character') THEN
            RAISE EXCEPTION 'rag.create_pipeline: content expression % must give text, '
                'not %', content, content_type
                USING errcode = 'datatype_mismatch';
        END IF;
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

-- rag.drop_pipeline(name): removes a pipeline: triggers, chunk tables, view, queue.
CREATE OR REPLACE FUNCTION rag.drop_pipeline(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may already be gone is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.drop_pipeline');
    suffix text;
    embedding_set integer;
BEGIN
    PERFORM rag._require_admin('rag.drop_pipeline');
    -- A scheduled job would fail every run once the pipeline is gone (rag.schedule).
    PERFORM rag.unschedule(p.name);
    FOREACH suffix IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        -- A broken pipeline's source may be gone (its OID then names nothing).
        IF EXISTS (SELECT 1 FROM pg_class WHERE oid = p.source) THEN
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s',
                'pgask_' || p.name || '_' || suffix, p.source);
        END IF;
        EXECUTE format('DROP FUNCTION IF EXISTS rag.%I()', 'pgask_' || p.name || '_' || suffix);
    END LOOP;
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', p.name || '_chunks');
    FOREACH embedding_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL) LOOP
        EXECUTE format('DROP TABLE IF EXISTS rag.%I', rag._store(p.name, embedding_set));
        PERFORM rag._forget_store(rag._store(p.name, embedding_set));
    END LOOP;
    DELETE FROM rag.pipelines AS x WHERE x.name = p.name;
    -- rag.queue's rows go with the pipeline (foreign key); the inbox has none.
    DELETE FROM rag.queue_inbox AS i WHERE i.pipeline = p.name;
END;
$$;

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
    UPDATE rag.pipelines AS x SET
        chunker = coalesce(alter_pipeline.chunker, x.chunker),
        metadata_sql = coalesce(new_metadata_sql, x.metadata_sql),
        mode = coalesce(alter_pipeline.mode, x.mode),
        max_attempts = coalesce(alter_pipeline.max_attempts, x.max_attempts),
        retry_base_seconds = coalesce(alter_pipeline.retry_base_seconds, x.retry_base_seconds),
        retry_max_seconds = coalesce(alter_pipeline.retry_max_seconds, x.retry_max_seconds),
        language = coalesce(alter_pipeline.language, x.language),
        search_options = coalesce(alter_pipeline.search_options, x.search_options),
        answer_options = coalesce(alter_pipeline.answer_options, x.answer_options)
    WHERE x.name = p.name;
    IF language IS NOT NULL AND language <> p.language THEN
        PERFORM rag._sync_keyword_index(p.name, s.embedding_set)
        FROM unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
    END IF;
    -- Follows the source, reinstalls the capture, or says why it cannot (a broken pipeline
    -- whose new settings make it whole again is repaired and re-queued).
    broken := rag._refresh_pipeline(p.name);
    IF broken IS NULL AND (
        (chunker IS NOT NULL AND chunker IS DISTINCT FROM p.chunker)
        OR (new_metadata_sql IS NOT NULL AND new_metadata_sql IS DISTINCT FROM p.metadata_sql)
    ) THEN
        EXECUTE format('SELECT rag._enqueue(%L, array_agg(%s)) FROM %s AS s',
            p.name, p.key_sql, p.source);
    END IF;
END;
$$;
