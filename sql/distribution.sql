-- Distribution: a pipeline's chunk store as a Citus distributed table (sharded by
-- document_id, so a document's chunks stay on one shard). rag.search needs no change of call:
-- vector top-k is pushed to every shard's HNSW index and merged; BM25's df, N and avgdl are
-- counted exactly over all shards at query time (rag._bm25_idf_exact), so a chunk's score
-- does not depend on its shard. Logic: pgask/retrieval/search.py. Read replicas need nothing
-- here: see docs/scale-out.md.

-- rag._distributed(store): whether a chunk table is a Citus distributed table; false where
-- Citus is not installed.
CREATE OR REPLACE FUNCTION rag._distributed(store_name text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    -- (Dynamic: the catalog only exists where Citus is installed.)
    RETURN EXISTS (
        SELECT 1 FROM rag.pipelines AS p
        WHERE store_name IN (rag._store(p.name, p.active_set), rag._store(p.name, p.building_set))
    ) AND rag._citus_table_type(store_name) = 'distributed';
END;
$$;

-- rag._citus_table_type(store): Citus's citus_table_type of a chunk table (distributed,
-- reference, ...), NULL when it is a plain table. Only call where Citus is installed.
CREATE OR REPLACE FUNCTION rag._citus_table_type(store_name text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
BEGIN
    EXECUTE 'SELECT citus_table_type FROM public.citus_tables WHERE table_name = $1'
    INTO kind
    USING to_regclass(format('rag.%I', store_name));
    RETURN kind;
END;
$$;

-- rag._bm25_idf_exact(store, lexemes, query): what rag._bm25_idf gives (idf of each lexeme
-- that occurs, and avgdl), counted from the chunk table itself: for distributed chunk tables,
-- whose writes Citus does not run the statistics triggers for. Every shard counts its chunks,
-- their length and, through the GIN index, the chunks holding each query lexeme; the
-- coordinator adds them up, so the figures are global. query: the lexemes as a tsquery
-- (any of them). SECURITY DEFINER, like rag._bm25_idf: statistics cover every chunk, also
-- those hidden from the reader, so that scores do not depend on who asks; limited to the
-- chunk tables of pipelines.
CREATE OR REPLACE FUNCTION rag._bm25_idf_exact(store_name text, lexemes text[], query tsquery)
RETURNS TABLE (lexeme text, idf double precision, avgdl double precision)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chunks bigint;
    total_length bigint;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM rag.pipelines AS p
        WHERE store_name IN (rag._store(p.name, p.active_set), rag._store(p.name, p.building_set))
    ) THEN
        RAISE EXCEPTION 'rag._bm25_idf_exact: % is not the chunk table of a pipeline',
            coalesce(quote_literal(store_name), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    EXECUTE format('SELECT count(*), coalesce(sum(c.doc_length), 0) FROM rag.%I AS c',
        store_name)
    INTO chunks, total_length;
    -- The same expressions, over the same types, as rag._bm25_idf: equal figures.
    RETURN QUERY EXECUTE format(
        'SELECT d.lexeme, ln(1 + ($2 - d.df + 0.5) / (d.df + 0.5)),'
        ' $3::double precision / greatest($2, 1)'
        ' FROM (SELECT u.lexeme, count(*) AS df FROM rag.%I AS c'
        '  CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, ''A'', $1), ''{a}'')) AS u'
        '  WHERE c.tsv @@ $4 GROUP BY u.lexeme) AS d',
        store_name)
    USING lexemes, chunks, total_length, query;
END;
$$;

-- rag.distribute_pipeline(name, shard_count): makes a pipeline's chunk tables (the active
-- set, and the one a rag.reembed is building) Citus distributed tables with shard_count
-- shards, distributed by document_id; existing chunks move to the shards. The HNSW, GIN and
-- metadata indexes exist per shard; the source table, the queue and pgask's own tables stay
-- on the coordinator, where `pgask worker` / rag.process_queue keep processing the queue
-- with the same guarantees (each write is one distributed transaction). Needs the citus
-- extension in this database and the workers added (citus_add_node). A pipeline whose source
-- has row-level security cannot be distributed: the chunks' policy checks the source row,
-- which a shard cannot read. rag.reembed builds its new set as a plain table: run this again
-- after starting one. Does nothing for tables already distributed.
CREATE OR REPLACE FUNCTION rag.distribute_pipeline(name text, shard_count integer DEFAULT 32)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.distribute_pipeline');
    store_name text;
BEGIN
    PERFORM rag._require_admin('rag.distribute_pipeline');
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'rag.distribute_pipeline: the citus extension is not installed in '
            'this database'
            USING errcode = 'object_not_in_prerequisite_state',
            hint = 'Load citus (shared_preload_libraries), CREATE EXTENSION citus, add the '
            'workers with citus_add_node; see docs/scale-out.md.';
    END IF;
    IF shard_count IS NULL OR shard_count < 1 OR shard_count > 4096 THEN
        RAISE EXCEPTION 'rag.distribute_pipeline: shard_count must be between 1 and 4096, got %',
            coalesce(shard_count::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = p.source) THEN
        RAISE EXCEPTION 'rag.distribute_pipeline: the source % of pipeline % has row-level '
            'security, and the chunks'' policy reads the source row, which the shards cannot',
            p.source, p.name
            USING errcode = 'feature_not_supported',
            hint = 'Keep this pipeline on one server (or a read replica); distribute '
            'pipelines whose sources have no row-level security.';
    END IF;
    -- The view reads the chunk table: recreated (with the access rules) after the move.
    EXECUTE format('DROP VIEW IF EXISTS rag.%I', p.name || '_chunks');
    FOREACH store_name IN ARRAY array_remove(ARRAY[
        rag._store(p.name, p.active_set), rag._store(p.name, p.building_set)
    ], NULL) LOOP
        CONTINUE WHEN rag._distributed(store_name);
        -- Citus runs no statement triggers with transition tables on distributed tables:
        -- BM25 statistics are counted at query time instead (rag._bm25_idf_exact).
        EXECUTE format('DROP TRIGGER IF EXISTS bm25_insert ON rag.%1$I;'
            ' DROP TRIGGER IF EXISTS bm25_update ON rag.%1$I;'
            ' DROP TRIGGER IF EXISTS bm25_delete ON rag.%1$I', store_name);
        DELETE FROM rag.bm25_terms AS t WHERE t.store = store_name;
        -- A unique key must contain the distribution column: id stays unique through its
        -- identity sequence, and keeps a plain index for fetching chunks by id.
        EXECUTE format('ALTER TABLE rag.%I DROP CONSTRAINT IF EXISTS %I', store_name,
            store_name || '_pkey');
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON rag.%I (id)', store_name || '_id',
            store_name);
        PERFORM public.create_distributed_table(
            format('rag.%I', store_name), 'document_id',
            shard_count => distribute_pipeline.shard_count, colocate_with => 'none'
        );
    END LOOP;
    PERFORM rag._point_view(p.name);
END;
$$;
