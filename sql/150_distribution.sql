-- Distribution: a pipeline's chunk store as a Citus distributed table (sharded by
-- document_id, so a document's chunks stay on one shard). rag.search needs no change of call:
-- vector top-k is pushed to every shard's HNSW index and merged; BM25's df, N and avgdl stay
-- global (rag.bm25_terms, rag.bm25_stats on the coordinator), so a chunk's score does not
-- depend on its shard. Citus runs no statement triggers with transition tables on distributed
-- tables, so the code that writes chunks keeps those statistics itself (rag._bm25_apply).
-- Logic: pgask/retrieval/search.py, pgask/queue.py. Read replicas need nothing here: see
-- docs/scale-out.md.

-- rag._distributed(store): whether a pipeline's chunk table is a Citus hash-distributed
-- table; false where Citus is not installed. Called by every search and every chunk write,
-- so it reads Citus's catalog directly (the citus_tables view asks every worker for sizes).
-- Executable by every role: rag.search runs as the reader, and the answer is no secret.
CREATE OR REPLACE FUNCTION rag._distributed(store_name text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    -- (Dynamic: the catalog only exists where Citus is installed.)
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition'
        ' WHERE logicalrelid = $1 AND partmethod = ''h'')'
    INTO found
    USING to_regclass(format('rag.%I', store_name));
    RETURN found;
END;
$$;

-- rag._bm25_apply(store, removed, removed_lengths, added, added_lengths): what the trigger
-- rag._bm25_maintain does for a plain chunk table, for chunks written to a distributed one:
-- the tsv and doc_length of the rows deleted and inserted (the writers get them with
-- RETURNING) are appended as deltas (rag._bm25_fold folds them).
CREATE OR REPLACE FUNCTION rag._bm25_apply(
    store_name text,
    removed tsvector[],
    removed_lengths integer[],
    added tsvector[],
    added_lengths integer[]
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO rag.bm25_term_deltas (store, lexeme, df)
    SELECT store_name, d.lexeme, sum(d.n)::integer FROM (
        SELECT u.lexeme, -1 AS n FROM unnest(coalesce(removed, '{}')) AS r (tsv)
        CROSS JOIN unnest(r.tsv) AS u
        UNION ALL
        SELECT u.lexeme, 1 FROM unnest(coalesce(added, '{}')) AS a (tsv)
        CROSS JOIN unnest(a.tsv) AS u
    ) AS d
    GROUP BY d.lexeme;
    INSERT INTO rag.bm25_stat_deltas (store, chunks, total_length)
    SELECT store_name,
        coalesce(cardinality(added), 0) - coalesce(cardinality(removed), 0),
        (SELECT coalesce(sum(l), 0) FROM unnest(added_lengths) AS l)
        - (SELECT coalesce(sum(l), 0) FROM unnest(removed_lengths) AS l);
$$;
REVOKE ALL ON FUNCTION rag._bm25_apply(text, tsvector[], integer[], tsvector[], integer[])
FROM public;
DROP FUNCTION IF EXISTS rag._delete_distributed_chunks(text, text[]);

-- rag._bm25_idf_exact(store, lexemes, query): what rag._bm25_idf gives (idf of each lexeme
-- that occurs, and avgdl), counted from the chunk table itself instead of the kept
-- statistics: the check that those are exact (tests, or an operator in doubt). Every shard
-- counts its chunks, their length and the chunks holding each lexeme; the coordinator adds
-- them up. It reads every chunk holding a query term, as scoring does (measured in
-- docs/scale-out.md), which is why searches use the kept figures. query: the lexemes as a
-- tsquery (any of them). Counts every chunk, also those hidden by row-level security, as the
-- kept statistics do; limited to the chunk tables of pipelines, and to the owner of rag.
CREATE OR REPLACE FUNCTION rag._bm25_idf_exact(store_name text, lexemes text[], query tsquery)
RETURNS TABLE (lexeme text, idf double precision, avgdl double precision)
LANGUAGE plpgsql
STABLE
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
        'SELECT d.lexeme, ln(1 + ($2 - d.df + 0.5) / (d.df + 0.5))::double precision,'
        ' $3::double precision / greatest($2, 1)'
        ' FROM (SELECT u.lexeme, count(*) AS df FROM rag.%I AS c'
        '  CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, ''A'', $1), ''{a}'')) AS u'
        '  WHERE c.tsv @@ $4 GROUP BY u.lexeme) AS d',
        store_name)
    USING lexemes, chunks, total_length, query;
END;
$$;

REVOKE ALL ON FUNCTION rag._bm25_idf_exact(text, text[], tsquery) FROM public;

-- rag._distribute_store(store, shard_count): makes one chunk table a distributed table,
-- by document_id. Citus runs no statement triggers with transition tables on distributed
-- tables: from now on the writers keep the BM25 statistics (rag._bm25_apply), which the
-- triggers kept exact until this transaction.
CREATE OR REPLACE FUNCTION rag._distribute_store(store_name text, shard_count integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF rag._distributed(store_name) THEN
        RETURN;
    END IF;
    PERFORM rag._require_admin('rag.distribute_pipeline');
    EXECUTE format('DROP TRIGGER IF EXISTS bm25_insert ON rag.%1$I;'
        ' DROP TRIGGER IF EXISTS bm25_update ON rag.%1$I;'
        ' DROP TRIGGER IF EXISTS bm25_delete ON rag.%1$I', store_name);
    -- A unique key must contain the distribution column: id stays unique through its
    -- identity sequence, and keeps a plain index for fetching chunks by id.
    EXECUTE format('ALTER TABLE rag.%I DROP CONSTRAINT IF EXISTS %I', store_name,
        store_name || '_pkey');
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON rag.%I (id)', store_name || '_id',
        store_name);
    PERFORM create_distributed_table(
        format('rag.%I', store_name)::regclass, 'document_id'::text,
        shard_count => _distribute_store.shard_count, colocate_with => 'none'::text
    );
END;
$$;
COMMENT ON FUNCTION rag._distribute_store IS
'SECURITY DEFINER: the chunk tables belong to pgask_owner';
REVOKE ALL ON FUNCTION rag._distribute_store(text, integer) FROM public;

-- rag._distribute_new_set(pipeline, set): called by rag.reembed for the chunk table it has
-- just created: a pipeline whose active chunk table is distributed builds the new one
-- distributed too, with as many shards, so the switch keeps it sharded.
CREATE OR REPLACE FUNCTION rag._distribute_new_set(pipeline text, embedding_set integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    active text := rag._store(pipeline,
        (SELECT p.active_set FROM rag.pipelines AS p WHERE p.name = pipeline));
    shards integer;
BEGIN
    IF NOT rag._distributed(active) THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT count(*) FROM pg_catalog.pg_dist_shard WHERE logicalrelid = $1'
    INTO shards
    USING format('rag.%I', active)::regclass;
    PERFORM rag._distribute_store(rag._store(pipeline, embedding_set), shards);
END;
$$;
REVOKE ALL ON FUNCTION rag._distribute_new_set(text, integer) FROM public;

-- rag.distribute_pipeline(name, shard_count): makes a pipeline's chunk tables (the active
-- set, and the one a rag.reembed is building) Citus distributed tables with shard_count
-- shards, distributed by document_id; existing chunks move to the shards. The HNSW, GIN and
-- metadata indexes exist per shard; the source table, the queue and pgask's own tables stay
-- on the coordinator, where `pgask worker` / rag.process_queue keep processing the queue
-- with the same guarantees (each write is one distributed transaction). A later
-- rag.reembed builds its new set distributed too. Needs the citus extension in this database
-- and the workers added (citus_add_node). A pipeline whose source has row-level security
-- cannot be distributed: the chunks' policy checks the source row, which a shard cannot
-- read. Does nothing for tables already distributed.
CREATE OR REPLACE FUNCTION rag.distribute_pipeline(name text, shard_count integer DEFAULT 32)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(name, 'rag.distribute_pipeline');
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
    PERFORM rag._distribute_store(s.store_name, distribute_pipeline.shard_count)
    FROM unnest(array_remove(ARRAY[
        rag._store(p.name, p.active_set), rag._store(p.name, p.building_set)
    ], NULL)) AS s (store_name);
    PERFORM rag._point_view(p.name);
END;
$$;
