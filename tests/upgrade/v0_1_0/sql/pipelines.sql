-- Pipelines: keep the chunks and embeddings of any table's rows fresh.
-- Triggers only record work (rag.queue); rag.process_queue does the chunking and embedding
-- outside the writer's transaction. Logic of the processing: pgask/queue.py.

-- The built-in offline model, always available as embedder 'local'.
INSERT INTO rag.embedders (name, provider, model, dimensions)
VALUES ('local', 'local', 'all-MiniLM-L6-v2-int8', 384)
ON CONFLICT (name) DO NOTHING;

-- rag._require_admin(what): pipelines run SQL fragments with the privileges of the role that
-- processes the queue, so only members of the role owning the rag schema may define them.
CREATE OR REPLACE FUNCTION rag._require_admin(what text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_role oid := (SELECT nspowner FROM pg_namespace WHERE nspname = 'rag');
BEGIN
    IF NOT pg_has_role(current_user, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION '%: only members of role % (the owner of schema rag) may do this',
            what, owner_role::regrole
            USING errcode = 'insufficient_privilege';
    END IF;
END;
$$;

-- rag._secret(name): a provider API key from rag.secrets, for the embedding code only.
CREATE OR REPLACE FUNCTION rag._secret(secret_name text)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT value FROM rag.secrets WHERE name = secret_name
$$;
REVOKE ALL ON FUNCTION rag._secret(text) FROM public;

-- rag.set_secret(name, value): stores an API key that embedders can reference as
-- api_key_env => 'secret:NAME'. The key is never shown by pgask's views or errors.
CREATE OR REPLACE FUNCTION rag.set_secret(name text, value text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.set_secret');
    IF name IS NULL OR value IS NULL THEN
        RAISE EXCEPTION 'rag.set_secret: name and value must not be NULL'
            USING errcode = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.secrets AS s (name, value) VALUES (set_secret.name, set_secret.value)
    ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE SET value = excluded.value;
END;
$$;

-- rag._check_registration(caller, name, base_url, url_example, options): the checks every
-- provider registry (embedders, rerankers, LLMs) makes; base_url is checked unless
-- url_example is NULL (a provider without an endpoint).
CREATE OR REPLACE FUNCTION rag._check_registration(
    caller text, name text, base_url text, url_example text, options jsonb
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION '%: name must be 1-64 letters, digits or _.:-, got %', caller,
            coalesce(quote_literal(name), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF url_example IS NOT NULL AND (base_url IS NULL OR base_url !~ '^https?://') THEN
        RAISE EXCEPTION '%: base_url must be an http(s) URL such as %, got %', caller,
            url_example, coalesce(quote_literal(base_url), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION '%: options must be a JSON object', caller
            USING errcode = 'invalid_parameter_value';
    END IF;
END;
$$;

-- rag.create_embedder(...): registers (or, while no pipeline uses it, redefines) an embedder.
-- provider 'local' is the offline model; 'openai' is any OpenAI-compatible /v1/embeddings
-- endpoint (OpenAI, Azure, Ollama, vLLM, TEI, `pgask serve-embeddings`). api_key_env names an
-- environment variable of the database server, or 'secret:NAME' for rag.set_secret.
-- options: timeout_seconds, max_batch_inputs, max_batch_tokens, send_dimensions.
CREATE OR REPLACE FUNCTION rag.create_embedder(
    name text,
    provider text DEFAULT 'openai',
    model text DEFAULT NULL,
    dimensions integer DEFAULT NULL,
    base_url text DEFAULT NULL,
    api_key_env text DEFAULT NULL,
    options jsonb DEFAULT '{}'::jsonb
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    used_by text;
BEGIN
    PERFORM rag._require_admin('rag.create_embedder');
    PERFORM rag._check_registration('rag.create_embedder', name, base_url,
        CASE WHEN provider = 'openai' THEN 'https://api.openai.com/v1' END, options);
    IF provider IS NULL OR provider NOT IN ('local', 'openai') THEN
        RAISE EXCEPTION 'rag.create_embedder: provider must be ''local'' or ''openai'', got %',
            coalesce(quote_literal(provider), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF provider = 'local' THEN
        model := coalesce(model, 'all-MiniLM-L6-v2-int8');
        dimensions := coalesce(dimensions, 384);
        IF model <> 'all-MiniLM-L6-v2-int8' OR dimensions <> 384 THEN
            RAISE EXCEPTION 'rag.create_embedder: the local provider has one model, '
                'all-MiniLM-L6-v2-int8 with 384 dimensions, got % with %', model, dimensions
                USING errcode = 'invalid_parameter_value';
        END IF;
    ELSE
        IF model IS NULL OR btrim(model) = '' THEN
            RAISE EXCEPTION 'rag.create_embedder: model is required for provider openai'
                USING errcode = 'invalid_parameter_value';
        END IF;
    END IF;
    IF dimensions IS NULL OR dimensions < 1 OR dimensions > 16000 THEN
        RAISE EXCEPTION 'rag.create_embedder: dimensions must be between 1 and 16000, got %',
            coalesce(dimensions::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(p.name, ', ') INTO used_by FROM rag.pipelines AS p
    WHERE p.embedder = create_embedder.name OR p.building_embedder = create_embedder.name;
    IF used_by IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_embedder: embedder % is pinned by pipeline(s) %; '
            'register a new name and switch with rag.reembed', name, used_by
            USING errcode = 'object_in_use';
    END IF;
    INSERT INTO rag.embedders AS e (
        name, provider, model, dimensions, base_url, api_key_env, options
    )
    VALUES (name, provider, model, dimensions, base_url, api_key_env, options)
    ON CONFLICT ON CONSTRAINT embedders_pkey DO UPDATE
        SET provider = excluded.provider, model = excluded.model,
        dimensions = excluded.dimensions, base_url = excluded.base_url,
        api_key_env = excluded.api_key_env, options = excluded.options;
END;
$$;

-- rag._store(pipeline, set): the name of a pipeline's chunk table for one embedding set.
CREATE OR REPLACE FUNCTION rag._store(pipeline text, embedding_set integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pipeline || '_chunks_' || embedding_set
$$;

-- rag._create_store(pipeline, set, dimensions): a chunk table with its HNSW index and its
-- keyword index (rag._sync_keyword_index). Access rules: rag._sync_security.
CREATE OR REPLACE FUNCTION rag._create_store(
    pipeline text, embedding_set integer, dimensions integer
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    store text := rag._store(pipeline, embedding_set);
BEGIN
    EXECUTE format(
        'CREATE TABLE rag.%I ('
        ' id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,'
        ' document_id text NOT NULL,'
        ' ordinal integer NOT NULL,'
        ' title text NOT NULL DEFAULT '''','
        ' content text NOT NULL,'
        ' token_count integer NOT NULL,'
        ' char_start integer NOT NULL,'
        ' char_end integer NOT NULL,'
        ' embed_hash bytea NOT NULL,'
        ' embedding vector(%s) NOT NULL,'
        ' metadata jsonb NOT NULL DEFAULT ''{}'','
        ' UNIQUE (document_id, ordinal))',
        store, dimensions
    );
    EXECUTE format('CREATE INDEX %I ON rag.%I (embed_hash)', store || '_hash', store);
    EXECUTE format(
        'CREATE INDEX %I ON rag.%I USING hnsw (embedding vector_cosine_ops)'
        ' WITH (m = 16, ef_construction = 64)',
        store || '_hnsw', store
    );
    PERFORM rag._sync_keyword_index(pipeline, embedding_set);
END;
$$;

-- rag._tsv_length(tsv): the number of lexeme occurrences in a tsvector: BM25's document
-- length (stop words are not counted, as in any BM25 over an analysed field).
CREATE OR REPLACE FUNCTION rag._tsv_length(tsv tsvector)
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(cardinality(u.positions)), 0)::integer FROM unnest(tsv) AS u
$$;

-- rag._bm25_maintain(): statement-level triggers of every chunk table keep rag.bm25_terms
-- and rag.bm25_stats current in the writing transaction. A per-table advisory lock orders
-- concurrent writers (two workers updating the same lexemes' counts in different orders
-- would otherwise deadlock); it is held until commit, so writers of one chunk table queue
-- here for the rest of each other's transaction.
CREATE OR REPLACE FUNCTION rag._bm25_maintain()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store_name text := tg_table_name;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgask.bm25'), hashtext(store_name));
    IF tg_op IN ('DELETE', 'UPDATE') THEN
        UPDATE rag.bm25_terms AS t SET df = t.df - d.n
        FROM (
            SELECT u.lexeme, count(*) AS n FROM old_rows AS o CROSS JOIN unnest(o.tsv) AS u
            GROUP BY u.lexeme
        ) AS d
        WHERE t.store = store_name AND t.lexeme = d.lexeme;
        UPDATE rag.bm25_stats AS s SET
            chunks = s.chunks - o.n, total_length = s.total_length - o.total
        FROM (SELECT count(*) AS n, coalesce(sum(doc_length), 0) AS total FROM old_rows) AS o
        WHERE s.store = store_name;
    END IF;
    IF tg_op IN ('INSERT', 'UPDATE') THEN
        INSERT INTO rag.bm25_terms AS t (store, lexeme, df)
        SELECT store_name, u.lexeme, count(*)
        FROM new_rows AS n CROSS JOIN unnest(n.tsv) AS u
        GROUP BY u.lexeme
        ORDER BY u.lexeme
        ON CONFLICT (store, lexeme) DO UPDATE SET df = t.df + excluded.df;
        UPDATE rag.bm25_stats AS s SET
            chunks = s.chunks + n.n, total_length = s.total_length + n.total
        FROM (SELECT count(*) AS n, coalesce(sum(doc_length), 0) AS total FROM new_rows) AS n
        WHERE s.store = store_name;
    END IF;
    RETURN NULL;
END;
$$;

-- rag._sync_keyword_index(pipeline, set): gives a chunk table its keyword columns in the
-- pipeline's language (tsv: title and content analysed by to_tsvector; doc_length), a GIN
-- index, the BM25 statistics and the triggers that keep them current, and a GIN index on
-- metadata for filters. Does nothing when they are there in the right language; a new
-- language rebuilds them (a rewrite of the table).
CREATE OR REPLACE FUNCTION rag._sync_keyword_index(pipeline text, embedding_set integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store_name text := rag._store(pipeline, embedding_set);
    lang regconfig := (SELECT p.language FROM rag.pipelines AS p WHERE p.name = pipeline);
    analysed text;
BEGIN
    IF EXISTS (
        SELECT 1 FROM rag.bm25_stats AS s WHERE s.store = store_name AND s.language = lang
    ) AND EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = format('rag.%I', store_name)::regclass AND attname = 'tsv'
    ) THEN
        RETURN;
    END IF;
    analysed := format('to_tsvector(%L::regconfig, title || '' '' || content)', lang::text);
    -- The view selects every column: it goes first, and rag._point_view recreates it.
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', pipeline || '_chunks');
    EXECUTE format('DROP TRIGGER IF EXISTS bm25_insert ON rag.%1$I;'
        ' DROP TRIGGER IF EXISTS bm25_update ON rag.%1$I;'
        ' DROP TRIGGER IF EXISTS bm25_delete ON rag.%1$I;'
        ' ALTER TABLE rag.%1$I DROP COLUMN IF EXISTS tsv, DROP COLUMN IF EXISTS doc_length',
        store_name);
    EXECUTE format('ALTER TABLE rag.%I'
        ' ADD COLUMN tsv tsvector GENERATED ALWAYS AS (%s) STORED,'
        ' ADD COLUMN doc_length integer GENERATED ALWAYS AS (rag._tsv_length(%s)) STORED',
        store_name, analysed, analysed);
    EXECUTE format('CREATE INDEX %I ON rag.%I USING gin (tsv)', store_name || '_tsv',
        store_name);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON rag.%I USING gin (metadata jsonb_path_ops)',
        store_name || '_metadata', store_name);
    PERFORM rag._forget_store(store_name);
    EXECUTE format(
        'INSERT INTO rag.bm25_terms (store, lexeme, df)'
        ' SELECT %L, u.lexeme, count(*) FROM rag.%I AS c CROSS JOIN unnest(c.tsv) AS u'
        ' GROUP BY u.lexeme', store_name, store_name);
    EXECUTE format(
        'INSERT INTO rag.bm25_stats (store, language, chunks, total_length)'
        ' SELECT %L, %L, count(*), coalesce(sum(doc_length), 0) FROM rag.%I',
        store_name, lang::text, store_name);
    IF to_regclass(format('rag.%I', rag._store(pipeline,
            (SELECT p.active_set FROM rag.pipelines AS p WHERE p.name = pipeline)))) IS NOT NULL THEN
        PERFORM rag._point_view(pipeline);
    END IF;
    EXECUTE format(
        'CREATE TRIGGER bm25_insert AFTER INSERT ON rag.%1$I REFERENCING NEW TABLE AS new_rows'
        ' FOR EACH STATEMENT EXECUTE FUNCTION rag._bm25_maintain();'
        ' CREATE TRIGGER bm25_update AFTER UPDATE ON rag.%1$I REFERENCING OLD TABLE AS old_rows'
        ' NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rag._bm25_maintain();'
        ' CREATE TRIGGER bm25_delete AFTER DELETE ON rag.%1$I REFERENCING OLD TABLE AS old_rows'
        ' FOR EACH STATEMENT EXECUTE FUNCTION rag._bm25_maintain()', store_name);
END;
$$;

-- rag._forget_store(store): BM25 statistics of a chunk table that is dropped or emptied.
CREATE OR REPLACE FUNCTION rag._forget_store(store_name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM rag.bm25_terms AS t WHERE t.store = store_name;
    DELETE FROM rag.bm25_stats AS s WHERE s.store = store_name;
$$;

-- rag._point_view(pipeline): (re)points the view rag.<pipeline>_chunks at the active set,
-- the stable name for queries and BI tools. security_invoker: the reader's own privileges
-- and row-level security apply through the view (see rag._sync_security).
CREATE OR REPLACE FUNCTION rag._point_view(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    active integer := (SELECT active_set FROM rag.pipelines WHERE name = pipeline);
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', pipeline || '_chunks');
    EXECUTE format(
        'CREATE VIEW rag.%I WITH (security_invoker = true) AS SELECT * FROM rag.%I',
        pipeline || '_chunks', rag._store(pipeline, active)
    );
    PERFORM rag._sync_security(pipeline);
END;
$$;

-- rag._sync_security(pipeline): chunks are copies of the source's rows, so they get the
-- source's access rules. Roles with SELECT on the source table get SELECT on its chunk
-- tables and view (and nobody else does); when the source has row-level security enabled, a
-- policy shows a chunk only to a role that can see its source row: the check runs the
-- source's own policies, as the reader. The owner, who runs the queue, is exempt, as owners
-- are from their tables' policies. Run by every install and pipeline change, and by the event
-- trigger below when a source table's ALTER TABLE (ENABLE ROW LEVEL SECURITY), GRANT or
-- REVOKE could change the answer.
CREATE OR REPLACE FUNCTION rag._sync_security(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._sync_security');
    has_rls boolean := (SELECT relrowsecurity FROM pg_class WHERE oid = p.source);
    store_name text;
    readers text;
    policy text;
BEGIN
    -- Our own GRANTs and ALTERs must not re-enter through the event trigger.
    PERFORM set_config('pgask.syncing_security', 'on', true);
    SELECT string_agg(
        CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', '
    )
    INTO readers
    FROM pg_class AS c
    CROSS JOIN LATERAL aclexplode(c.relacl) AS a
    LEFT JOIN pg_roles AS r ON a.grantee = r.oid
    WHERE c.oid = p.source AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner;
    FOREACH store_name IN ARRAY array_remove(ARRAY[
        rag._store(p.name, p.active_set), rag._store(p.name, p.building_set)
    ], NULL) LOOP
        policy := 'true';
        IF has_rls THEN
            policy := format('EXISTS (SELECT 1 FROM %s AS s WHERE %s)', p.source,
                replace(p.key_join_sql, 'k.document_id', format('%I.document_id', store_name)));
        END IF;
        EXECUTE format('ALTER TABLE rag.%I ENABLE ROW LEVEL SECURITY', store_name);
        EXECUTE format('DROP POLICY IF EXISTS source_rows ON rag.%I', store_name);
        EXECUTE format('CREATE POLICY source_rows ON rag.%I FOR SELECT USING (%s)',
            store_name, policy);
        EXECUTE format('REVOKE ALL ON rag.%I FROM PUBLIC', store_name);
        IF readers IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', store_name, readers);
        END IF;
    END LOOP;
    IF to_regclass(format('rag.%I', p.name || '_chunks')) IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON rag.%I FROM PUBLIC', p.name || '_chunks');
        IF readers IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', p.name || '_chunks', readers);
        END IF;
    END IF;
    PERFORM set_config('pgask.syncing_security', '', true);
END;
$$;

-- rag._on_source_ddl(): enabling or disabling row-level security on a source table, or
-- changing grants, reaches the chunks at once.
CREATE OR REPLACE FUNCTION rag._on_source_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('pgask.syncing_security', true) = 'on' THEN
        RETURN;
    END IF;
    IF tg_tag = 'ALTER TABLE' THEN
        PERFORM rag._sync_security(p.name) FROM rag.pipelines AS p
        WHERE p.source IN (SELECT c.objid FROM pg_event_trigger_ddl_commands() AS c);
    ELSE
        PERFORM rag._sync_security(p.name) FROM rag.pipelines AS p;
    END IF;
END;
$$;

-- (Through EXECUTE: there is no CREATE OR REPLACE EVENT TRIGGER.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_source_security;
    EXECUTE 'CREATE EVENT TRIGGER pgask_source_security ON ddl_command_end'
        ' WHEN TAG IN (''ALTER TABLE'', ''GRANT'', ''REVOKE'')'
        ' EXECUTE FUNCTION rag._on_source_ddl()';
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

-- rag._metadata_sql(source, columns): the SQL building a chunk's metadata from the named
-- columns of the source row "s": each column as a key, except that a jsonb column holding an
-- object contributes its keys, so rag.search filters reach them directly ({"team": "db"},
-- not {"metadata": {"team": "db"}}). Plain columns come last and win a key clash.
CREATE OR REPLACE FUNCTION rag._metadata_sql(source regclass, columns text[])
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result text;
BEGIN
    SELECT string_agg(
        CASE WHEN a.atttypid = 'jsonb'::regtype
            THEN format('CASE WHEN jsonb_typeof(%1$s) = ''object'' THEN %1$s'
                ' ELSE jsonb_build_object(%2$L, %1$s) END', c.column_sql, c.name)
            ELSE format('jsonb_build_object(%L, %s)', c.name, c.column_sql)
        END, ' || ' ORDER BY a.atttypid = 'jsonb'::regtype DESC, c.n
    )
    INTO result
    FROM unnest(columns) WITH ORDINALITY AS u (name, n)
    CROSS JOIN LATERAL (
        SELECT u.name, u.n, rag._column_sql(source, u.name, 'metadata', false) AS column_sql
    ) AS c
    INNER JOIN pg_attribute AS a ON a.attrelid = source AND a.attname = c.name;
    RETURN coalesce(result, '''{}''::jsonb');
END;
$$;

-- rag._create_pipeline(...): shared by both rag.create_pipeline forms; content_sql is an
-- expression over "s" already checked by the caller.
DROP FUNCTION IF EXISTS rag._create_pipeline(
    text, regclass, text, text, text[], jsonb, text, text
);
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
SET search_path = pg_catalog, public, pg_temp
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
        metadata_sql := rag._metadata_sql(source, metadata);
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

    PERFORM rag._install_capture(name);
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
DROP FUNCTION IF EXISTS rag.create_pipeline(
    text, regclass, text, text, text[], jsonb, text, text
);
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
DROP FUNCTION IF EXISTS rag.create_pipeline(
    text, regclass, text[], text, text[], jsonb, text, text
);
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

-- rag._enqueue(pipeline, ids): queues source rows for every set being maintained (the active
-- one and, during rag.reembed, the new one). Used for backfills; the generated capture
-- functions (rag._install_capture) inline the same INSERT so that writes stay cheap. A row
-- already queued gets a new generation, so an older in-flight result is not taken as final.
DROP FUNCTION IF EXISTS rag._enqueue(text, text[], boolean);
CREATE OR REPLACE FUNCTION rag._enqueue(pipeline text, ids text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._enqueue');
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO rag.queue AS q (pipeline, embedding_set, document_id)
    SELECT p.name, sets.embedding_set, i.document_id
    FROM unnest(ids) AS i (document_id)
    CROSS JOIN unnest(ARRAY[p.active_set, p.building_set]) AS sets (embedding_set)
    WHERE sets.embedding_set IS NOT NULL
    ON CONFLICT ON CONSTRAINT queue_job_key DO UPDATE
        SET generation = q.generation + 1, status = 'pending', attempts = 0,
        not_before = now(), enqueued_at = now(), last_error = NULL;
    PERFORM pg_notify('rag_queue', p.name);
END;
$$;

-- rag._forget(pipeline, ids): source rows that are gone lose their chunks and queue entries,
-- in the deleting transaction.
CREATE OR REPLACE FUNCTION rag._forget(pipeline text, ids text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._forget');
    embedding_set integer;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    FOREACH embedding_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL) LOOP
        EXECUTE format('DELETE FROM rag.%I WHERE document_id = ANY($1)',
            rag._store(p.name, embedding_set)) USING ids;
    END LOOP;
    DELETE FROM rag.queue AS q WHERE q.pipeline = p.name AND q.document_id = ANY(ids);
END;
$$;

-- rag._truncate(pipeline): TRUNCATE of the source empties the chunk tables and the queue.
CREATE OR REPLACE FUNCTION rag._truncate(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._truncate');
    embedding_set integer;
BEGIN
    FOREACH embedding_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL) LOOP
        EXECUTE format('TRUNCATE rag.%I', rag._store(p.name, embedding_set));
        UPDATE rag.bm25_stats AS s SET chunks = 0, total_length = 0
        WHERE s.store = rag._store(p.name, embedding_set);
        DELETE FROM rag.bm25_terms AS t WHERE t.store = rag._store(p.name, embedding_set);
    END LOOP;
    DELETE FROM rag.queue AS q WHERE q.pipeline = p.name;
END;
$$;

-- rag._capture_truncate(): the TRUNCATE trigger of every pipeline's source table.
CREATE OR REPLACE FUNCTION rag._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._truncate(tg_argv[0]);
    RETURN NULL;
END;
$$;

-- rag._install_capture(pipeline): (re)creates the pipeline's triggers and the functions they
-- call. The functions are generated with the pipeline's SQL fragments written in, so their
-- plans are cached per connection: a write pays one INSERT into rag.queue, not a dynamic
-- query (see `make bench`). They only record which rows changed: inserted rows; updated rows
-- whose content, title or metadata changed (an UPDATE of other columns records nothing);
-- deleted rows, whose chunks go at once. Re-run at every install and rag.alter_pipeline.
CREATE OR REPLACE FUNCTION rag._install_capture(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._install_capture');
    prefix text := 'pgask_' || p.name;
    record_changes text;
    row_sql text;
    body text := 'CREATE OR REPLACE FUNCTION rag.%I() RETURNS trigger LANGUAGE plpgsql'
        ' SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $body$'
        ' DECLARE changed text[]; removed text[]; BEGIN %s RETURN NULL; END; $body$';
BEGIN
    -- What every function does with the keys in `changed`: queue them for each embedding set
    -- being maintained (written in; rag.reembed and its switch regenerate the functions).
    record_changes := format(
        'IF cardinality(changed) > 0 THEN'
        ' INSERT INTO rag.queue AS q (pipeline, embedding_set, document_id)'
        ' SELECT %1$L, sets.embedding_set, ids.document_id FROM unnest(changed) AS ids'
        ' (document_id) CROSS JOIN unnest(%3$L::integer[]) AS sets (embedding_set)'
        ' ON CONFLICT ON CONSTRAINT queue_job_key'
        ' DO UPDATE SET generation = q.generation + 1, status = ''pending'', attempts = 0,'
        ' not_before = now(), enqueued_at = now(), last_error = NULL; %2$s END IF;',
        p.name,
        CASE WHEN p.mode = 'sync' THEN format('PERFORM rag._process_now(%L, changed);', p.name)
            ELSE format('PERFORM pg_notify(''rag_queue'', %L);', p.name) END,
        array_remove(ARRAY[p.active_set, p.building_set], NULL)
    );
    row_sql := format('SELECT %s AS k, %s AS c, %s AS t, %s AS m FROM %%s AS s', p.key_sql,
        p.content_sql, p.title_sql, p.metadata_sql);

    EXECUTE format(body, prefix || '_insert', format(
        'changed := ARRAY(SELECT %s FROM new_rows AS s); %s', p.key_sql, record_changes));
    EXECUTE format(body, prefix || '_update', format(
        'changed := ARRAY(SELECT n.k FROM (%1$s) AS n LEFT JOIN (%2$s) AS o ON o.k = n.k'
        ' WHERE o.k IS NULL OR (n.c, n.t, n.m) IS DISTINCT FROM (o.c, o.t, o.m));'
        ' removed := ARRAY(SELECT o.k FROM (%2$s) AS o WHERE o.k NOT IN'
        ' (SELECT n.k FROM (%1$s) AS n));'
        ' IF cardinality(removed) > 0 THEN PERFORM rag._forget(%3$L, removed); END IF; %4$s',
        format(row_sql, 'new_rows'), format(row_sql, 'old_rows'), p.name, record_changes));
    EXECUTE format(body, prefix || '_delete', format(
        'PERFORM rag._forget(%L, ARRAY(SELECT %s FROM old_rows AS s));', p.name, p.key_sql));

    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', prefix || '_insert', p.source);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', prefix || '_update', p.source);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', prefix || '_delete', p.source);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', prefix || '_truncate', p.source);
    EXECUTE format(
        'CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows'
        ' FOR EACH STATEMENT EXECUTE FUNCTION rag.%I()',
        prefix || '_insert', p.source, prefix || '_insert'
    );
    EXECUTE format(
        'CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows'
        ' NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rag.%I()',
        prefix || '_update', p.source, prefix || '_update'
    );
    EXECUTE format(
        'CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows'
        ' FOR EACH STATEMENT EXECUTE FUNCTION rag.%I()',
        prefix || '_delete', p.source, prefix || '_delete'
    );
    EXECUTE format(
        'CREATE TRIGGER %I AFTER TRUNCATE ON %s'
        ' FOR EACH STATEMENT EXECUTE FUNCTION rag._capture_truncate(%L)',
        prefix || '_truncate', p.source, p.name
    );
    PERFORM rag._sync_security(p.name);
END;
$$;

-- rag._chunker_error(config): NULL when a chunker configuration is valid, else why not.
CREATE OR REPLACE FUNCTION rag._chunker_error(config jsonb)
RETURNS text
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.chunker_error(config)
$$;

-- rag._process_now(pipeline, ids): sync mode's processing inside the writer's transaction.
CREATE OR REPLACE FUNCTION rag._process_now(pipeline text, ids text[])
RETURNS void
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import queue
queue.process_now(plpy, pipeline, ids)
$$;

-- rag._process_queue(...): the PL/Python implementation behind rag.process_queue.
CREATE OR REPLACE PROCEDURE rag._process_queue(
    pipeline text,
    batch_size integer,
    max_seconds double precision,
    lease_seconds double precision,
    INOUT processed bigint DEFAULT NULL
)
LANGUAGE plpython3u
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import queue
return (queue.process_queue(plpy, pipeline, batch_size, max_seconds, lease_seconds),)
$$;

-- rag.process_queue(pipeline, batch_size, max_seconds, lease_seconds): claims queued rows
-- with a lease (FOR UPDATE SKIP LOCKED, so workers never share a row), commits, chunks and
-- embeds them (reusing the vectors of chunks whose text is unchanged), and writes the result
-- only if the source row still holds the content that was embedded; commits; repeats until
-- the queue is empty or max_seconds have passed. Failures are retried with exponential
-- backoff and jitter, then kept as dead letters (rag.dead_letters). `processed` returns the
-- rows finished. Call it outside an explicit transaction: CALL rag.process_queue();
-- (No SET search_path here: a procedure with one cannot commit.)
CREATE OR REPLACE PROCEDURE rag.process_queue(
    pipeline text DEFAULT NULL,
    batch_size integer DEFAULT 32,
    max_seconds double precision DEFAULT 60,
    lease_seconds double precision DEFAULT 300,
    INOUT processed bigint DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
BEGIN
    IF pipeline IS NOT NULL THEN
        PERFORM rag._pipeline(pipeline, 'rag.process_queue');
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 10000 THEN
        RAISE EXCEPTION 'rag.process_queue: batch_size must be between 1 and 10000, got %',
            coalesce(batch_size::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF max_seconds IS NULL OR max_seconds < 0 THEN
        RAISE EXCEPTION 'rag.process_queue: max_seconds must be >= 0, got %',
            coalesce(max_seconds::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF lease_seconds IS NULL OR lease_seconds <= 0 THEN
        RAISE EXCEPTION 'rag.process_queue: lease_seconds must be > 0, got %',
            coalesce(lease_seconds::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    CALL rag._process_queue(pipeline, batch_size, max_seconds, lease_seconds, processed);
END;
$$;

-- rag._switch_set(pipeline): makes a finished rag.reembed set the active one and drops the
-- old chunk table, in one transaction; a no-op if rows of the new set are still queued.
CREATE OR REPLACE FUNCTION rag._switch_set(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    e rag.embedders;
BEGIN
    SELECT * INTO p FROM rag.pipelines AS x WHERE x.name = pipeline FOR UPDATE;
    IF p.building_set IS NULL OR EXISTS (
        SELECT 1 FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.embedding_set = p.building_set
    ) THEN
        RETURN;
    END IF;
    SELECT * INTO e FROM rag.embedders AS x WHERE x.name = p.building_embedder;
    UPDATE rag.pipelines AS x SET
        active_set = p.building_set, embedder = e.name, embedding_model = e.model,
        dimensions = e.dimensions, building_set = NULL, building_embedder = NULL
    WHERE x.name = p.name;
    PERFORM rag._point_view(p.name);
    PERFORM rag._install_capture(p.name);
    EXECUTE format('DROP TABLE rag.%I', rag._store(p.name, p.active_set));
    PERFORM rag._forget_store(rag._store(p.name, p.active_set));
    DELETE FROM rag.queue AS q WHERE q.pipeline = p.name AND q.embedding_set = p.active_set;
END;
$$;

-- rag.drop_pipeline(name): removes a pipeline: triggers, chunk tables, view, queue.
CREATE OR REPLACE FUNCTION rag.drop_pipeline(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.drop_pipeline');
    suffix text;
    embedding_set integer;
BEGIN
    PERFORM rag._require_admin('rag.drop_pipeline');
    FOREACH suffix IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pgask_' || p.name || '_' || suffix,
            p.source);
        EXECUTE format('DROP FUNCTION IF EXISTS rag.%I()', 'pgask_' || p.name || '_' || suffix);
    END LOOP;
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', p.name || '_chunks');
    FOREACH embedding_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL) LOOP
        EXECUTE format('DROP TABLE IF EXISTS rag.%I', rag._store(p.name, embedding_set));
        PERFORM rag._forget_store(rag._store(p.name, embedding_set));
    END LOOP;
    DELETE FROM rag.pipelines AS x WHERE x.name = p.name;
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
DROP FUNCTION IF EXISTS rag.alter_pipeline(
    text, jsonb, text[], text, integer, double precision, double precision
);
DROP FUNCTION IF EXISTS rag.alter_pipeline(
    text, jsonb, text[], text, integer, double precision, double precision, regconfig, jsonb
);
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
        new_metadata_sql := rag._metadata_sql(p.source, metadata);
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
    PERFORM rag._install_capture(p.name);
    IF (chunker IS NOT NULL AND chunker IS DISTINCT FROM p.chunker)
        OR (new_metadata_sql IS NOT NULL AND new_metadata_sql IS DISTINCT FROM p.metadata_sql) THEN
        EXECUTE format('SELECT rag._enqueue(%L, array_agg(%s)) FROM %s AS s',
            p.name, p.key_sql, p.source);
    END IF;
END;
$$;

-- rag.reembed(pipeline, embedder): switches a pipeline to another embedder without downtime.
-- A new chunk table is filled in the background (rag.process_queue) while queries keep using
-- the current one; when the last row is embedded, the pipeline switches atomically and the
-- old table is dropped. rag.pipeline_status shows the progress.
CREATE OR REPLACE FUNCTION rag.reembed(pipeline text, embedder text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag.reembed');
    e rag.embedders;
    new_set integer;
BEGIN
    PERFORM rag._require_admin('rag.reembed');
    SELECT * INTO e FROM rag.embedders AS x WHERE x.name = reembed.embedder;
    IF NOT found THEN
        RAISE EXCEPTION 'rag.reembed: embedder % is not registered (see rag.create_embedder)',
            coalesce(quote_literal(embedder), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF p.building_set IS NOT NULL THEN
        RAISE EXCEPTION 'rag.reembed: pipeline % is already being re-embedded with %',
            p.name, p.building_embedder
            USING errcode = 'object_in_use';
    END IF;
    IF e.name = p.embedder THEN
        RAISE EXCEPTION 'rag.reembed: pipeline % already uses embedder %', p.name, e.name
            USING errcode = 'invalid_parameter_value';
    END IF;
    new_set := p.active_set + 1;
    PERFORM rag._create_store(p.name, new_set, e.dimensions);
    UPDATE rag.pipelines AS x SET building_set = new_set, building_embedder = e.name
    WHERE x.name = p.name;
    PERFORM rag._install_capture(p.name);
    EXECUTE format('SELECT rag._enqueue(%L, array_agg(%s)) FROM %s AS s',
        p.name, p.key_sql, p.source);
    -- Rows already queued for the active set were queued for the new set too; a table with
    -- no rows switches on the next rag.process_queue.
END;
$$;

-- rag.retry_failed(pipeline): puts dead-lettered rows back in the queue (all pipelines when
-- NULL); returns how many.
CREATE OR REPLACE FUNCTION rag.retry_failed(pipeline text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    retried bigint;
BEGIN
    IF pipeline IS NOT NULL THEN
        PERFORM rag._pipeline(pipeline, 'rag.retry_failed');
    END IF;
    UPDATE rag.queue AS q
    SET status = 'pending', attempts = 0, not_before = now(), leased_until = NULL
    WHERE q.status = 'failed' AND (retry_failed.pipeline IS NULL OR q.pipeline = retry_failed.pipeline);
    GET DIAGNOSTICS retried = ROW_COUNT;
    PERFORM pg_notify('rag_queue', coalesce(pipeline, ''));
    RETURN retried;
END;
$$;

-- rag.pipeline_status: one row per pipeline. pending: waiting (or backing off); leased: being
-- processed now; failed: dead letters; done: rows finished since creation; lag_seconds: age
-- of the oldest pending row; reembed_remaining: rows left before a rag.reembed switches.
CREATE OR REPLACE VIEW rag.pipeline_status AS
SELECT
    p.name AS pipeline,
    p.source::text AS source,
    p.mode,
    p.embedder,
    p.embedding_model,
    p.dimensions,
    coalesce(st.done, 0) AS done,
    coalesce(st.chunks_embedded, 0) AS chunks_embedded,
    coalesce(st.chunks_reused, 0) AS chunks_reused,
    coalesce(st.stale_discarded, 0) AS stale_discarded,
    st.last_done_at,
    p.building_embedder AS reembedding_to,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE
            q.pipeline = p.name AND q.status = 'pending'
            AND (q.leased_until IS NULL OR q.leased_until < now())
    ) AS pending,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'pending' AND q.leased_until >= now()
    ) AS leased,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'failed'
    ) AS failed,
    (
        SELECT extract(EPOCH FROM now() - min(q.enqueued_at)) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'pending'
    ) AS lag_seconds,
    (
        SELECT q.last_error FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.last_error IS NOT NULL
        ORDER BY q.last_attempt_at DESC NULLS LAST LIMIT 1
    ) AS last_error,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.embedding_set = p.building_set
    ) AS reembed_remaining
FROM rag.pipelines AS p
LEFT JOIN rag.pipeline_stats AS st ON p.name = st.pipeline;

-- rag.dead_letters: rows that failed max_attempts times (or with an error that retrying
-- cannot fix), with the last error. rag.retry_failed() queues them again.
CREATE OR REPLACE VIEW rag.dead_letters AS
SELECT
    q.pipeline,
    q.document_id,
    q.embedding_set,
    q.attempts,
    q.last_error,
    q.last_attempt_at,
    q.enqueued_at
FROM rag.queue AS q
WHERE q.status = 'failed';

-- Every install regenerates the capture functions, so a new version's trigger logic reaches
-- existing pipelines.
DO $$
BEGIN
    PERFORM rag._sync_keyword_index(p.name, s.embedding_set)
    FROM rag.pipelines AS p
    CROSS JOIN unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
    PERFORM rag._install_capture(name) FROM rag.pipelines;
END;
$$;
