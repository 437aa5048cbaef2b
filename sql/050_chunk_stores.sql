-- Chunk stores: one table per pipeline and embedding set, with its HNSW index, its keyword
-- columns and the BM25 statistics kept by its triggers, and the view rag.<pipeline>_chunks.

-- rag._store(pipeline, set): the name of a pipeline's chunk table for one embedding set.
CREATE OR REPLACE FUNCTION rag._store(pipeline text, embedding_set integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pipeline || '_chunks_' || embedding_set
$$;

-- rag._create_store(pipeline, set, dimensions): a chunk table with its HNSW index, its
-- sentence columns (rag._sync_sentence_columns) and its keyword index
-- (rag._sync_keyword_index). Access rules: rag._sync_security.
CREATE OR REPLACE FUNCTION rag._create_store(
    pipeline text, embedding_set integer, dimensions integer
)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store text := rag._store(pipeline, embedding_set);
BEGIN
    PERFORM rag._require_admin('rag.create_pipeline');
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
        ' embedding _vector_schema_.vector(%s) NOT NULL,'
        ' metadata jsonb NOT NULL DEFAULT ''{}'','
        ' UNIQUE (document_id, ordinal))',
        store, dimensions
    );
    EXECUTE format('CREATE INDEX %I ON rag.%I (embed_hash)', store || '_hash', store);
    EXECUTE format(
        'CREATE INDEX %I ON rag.%I USING hnsw (embedding _vector_schema_.vector_cosine_ops)'
        ' WITH (m = 16, ef_construction = 64)',
        store || '_hnsw', store
    );
    PERFORM rag._sync_sentence_columns(pipeline, embedding_set);
    PERFORM rag._sync_keyword_index(pipeline, embedding_set);
END;
$$;
COMMENT ON FUNCTION rag._create_store IS
'SECURITY DEFINER: a chunk table belongs to pgask_owner';

-- rag._sync_sentence_columns(pipeline, set): gives a chunk table the columns that hold its
-- sentences' vectors from the local model (pgask.queue writes them, the extractive answerer
-- reads them instead of embedding each sentence per question): sentence_spans, the
-- sentences' offsets in content as {start, end, start, end, ...}, and sentence_vectors,
-- their vectors as float16, one after another. NULL where the embedder is not the local
-- model, and in rows written before the columns existed (the answerer then embeds those
-- sentences itself). On the chunk row, so row-level security covers them. Does nothing
-- when they are there; otherwise re-points the view, which lists every column.
CREATE OR REPLACE FUNCTION rag._sync_sentence_columns(pipeline text, embedding_set integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store_name text := rag._store(pipeline, embedding_set);
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = format('rag.%I', store_name)::regclass
            AND attname = 'sentence_vectors' AND NOT attisdropped
    ) THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE rag.%I ADD COLUMN sentence_spans integer[],'
        ' ADD COLUMN sentence_vectors bytea', store_name);
    IF store_name = rag._store(pipeline,
            (SELECT p.active_set FROM rag.pipelines AS p WHERE p.name = pipeline))
            AND to_regclass(format('rag.%I', pipeline || '_chunks')) IS NOT NULL THEN
        PERFORM rag._point_view(pipeline);
    END IF;
END;
$$;
COMMENT ON FUNCTION rag._sync_sentence_columns IS
'SECURITY DEFINER: the chunk tables belong to pgask_owner';

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

-- rag._bm25_maintain(): statement-level triggers of every chunk table append what a
-- statement added and removed to rag.bm25_term_deltas and rag.bm25_stat_deltas (appends only:
-- no row that two chunk writers both update, no lock held until commit); rag._bm25_fold
-- folds them into rag.bm25_terms and rag.bm25_stats. Readers add both (rag.bm25_term_stats).
CREATE OR REPLACE FUNCTION rag._bm25_maintain()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    store_name text := tg_table_name;
BEGIN
    IF tg_op IN ('DELETE', 'UPDATE') THEN
        INSERT INTO rag.bm25_term_deltas (store, lexeme, df)
        SELECT store_name, u.lexeme, -count(*)
        FROM old_rows AS o CROSS JOIN unnest(o.tsv) AS u
        GROUP BY u.lexeme;
        INSERT INTO rag.bm25_stat_deltas (store, chunks, total_length)
        SELECT store_name, -count(*), -coalesce(sum(o.doc_length), 0)
        FROM old_rows AS o HAVING count(*) > 0;
    END IF;
    IF tg_op IN ('INSERT', 'UPDATE') THEN
        INSERT INTO rag.bm25_term_deltas (store, lexeme, df)
        SELECT store_name, u.lexeme, count(*)
        FROM new_rows AS n CROSS JOIN unnest(n.tsv) AS u
        GROUP BY u.lexeme;
        INSERT INTO rag.bm25_stat_deltas (store, chunks, total_length)
        SELECT store_name, count(*), coalesce(sum(n.doc_length), 0)
        FROM new_rows AS n HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END;
$$;

-- rag._lock_key(what): the advisory lock key of one of pgask's locks (a chunk table's
-- statistics fold, a document's chunks), salted with a value only pgask_owner reads
-- (rag.private): a role that could compute a key could take it first and hold it, stalling
-- that work. SECURITY DEFINER: reads rag.private. For pgask's admins and workers.
CREATE OR REPLACE FUNCTION rag._lock_key(what text)
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- Only the locks workers take: no other key of the salt (the install lock's) is given out.
    SELECT CASE WHEN what ~ '^(chunks|bm25_fold) ' THEN
        hashtextextended('lock ' || what, hashtextextended(p.value, 0)) END
    FROM rag.private AS p WHERE p.key = 'lock_salt'
$$;
COMMENT ON FUNCTION rag._lock_key(text) IS
'SECURITY DEFINER: reads the salt in rag.private, which only pgask_owner may';

-- rag._bm25_fold(store): folds the committed deltas of a chunk table into its statistics, in
-- the caller's transaction; a no-op when another fold of the same table is under way (the
-- lock is taken by folds only, never by writers). Workers call it after each batch.
CREATE OR REPLACE FUNCTION rag._bm25_fold(store_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(rag._lock_key('bm25_fold ' || store_name)) THEN
        RETURN;
    END IF;
    WITH taken AS (
        DELETE FROM rag.bm25_term_deltas AS d WHERE d.store = store_name
        RETURNING d.lexeme, d.df
    ), summed AS (
        SELECT t.lexeme, sum(t.df)::integer AS df FROM taken AS t GROUP BY t.lexeme
    )
    -- (A lexeme whose count falls to 0 keeps its row: readers skip df = 0.)
    INSERT INTO rag.bm25_terms AS b (store, lexeme, df)
    SELECT store_name, s.lexeme, s.df FROM summed AS s WHERE s.df <> 0
    ORDER BY s.lexeme
    ON CONFLICT (store, lexeme) DO UPDATE SET df = b.df + excluded.df;
    WITH taken AS (
        DELETE FROM rag.bm25_stat_deltas AS d WHERE d.store = store_name
        RETURNING d.chunks, d.total_length
    )
    UPDATE rag.bm25_stats AS s SET
        chunks = s.chunks + t.chunks, total_length = s.total_length + t.total_length
    FROM (
        SELECT coalesce(sum(x.chunks), 0) AS chunks,
            coalesce(sum(x.total_length), 0) AS total_length
        FROM taken AS x
    ) AS t
    WHERE s.store = store_name AND (t.chunks <> 0 OR t.total_length <> 0);
END;
$$;

-- rag._sync_keyword_index(pipeline, set): gives a chunk table its keyword columns in the
-- pipeline's language (tsv: title and content analysed by to_tsvector, kept in the row by
-- STORAGE MAIN because BM25 reads it for every candidate while content and the vector can go
-- to TOAST; doc_length), a GIN index, the BM25 statistics and the triggers that keep them
-- current, and a GIN index on metadata for filters. Does nothing when they are there in the
-- right language; a new language rebuilds them (a rewrite of the table).
CREATE OR REPLACE FUNCTION rag._sync_keyword_index(pipeline text, embedding_set integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may not exist yet is routine here, not news
SET client_min_messages = warning
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
        ' ADD COLUMN doc_length integer GENERATED ALWAYS AS (rag._tsv_length(%s)) STORED,'
        ' ALTER COLUMN tsv SET STORAGE MAIN',
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
COMMENT ON FUNCTION rag._sync_keyword_index IS
'SECURITY DEFINER: the chunk tables and their triggers belong to pgask_owner';

-- rag._forget_store(store): BM25 statistics of a chunk table that is dropped or emptied.
CREATE OR REPLACE FUNCTION rag._forget_store(store_name text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM rag.bm25_terms AS t WHERE t.store = store_name;
    DELETE FROM rag.bm25_term_deltas AS t WHERE t.store = store_name;
    DELETE FROM rag.bm25_stats AS s WHERE s.store = store_name;
    DELETE FROM rag.bm25_stat_deltas AS s WHERE s.store = store_name;
$$;

-- rag._point_view(pipeline): (re)points the view rag.<pipeline>_chunks at the active set,
-- the stable name for queries and BI tools. security_invoker: the reader's own privileges
-- and row-level security apply through the view (see rag._sync_security).
CREATE OR REPLACE FUNCTION rag._point_view(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may not exist yet is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    active integer := (SELECT active_set FROM rag.pipelines WHERE name = pipeline);
BEGIN
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', pipeline || '_chunks');
    EXECUTE format(
        'CREATE VIEW rag.%I WITH (security_invoker = true) AS SELECT * FROM rag.%I',
        pipeline || '_chunks', rag._store(pipeline, active)
    );
    EXECUTE format('COMMENT ON VIEW rag.%I IS %L', pipeline || '_chunks', format(
        'Chunks of pipeline %s (its active embedding set), as the reader may see them',
        pipeline));
    PERFORM rag._sync_security(pipeline);
END;
$$;
COMMENT ON FUNCTION rag._point_view IS
'SECURITY DEFINER: the view belongs to pgask_owner';
