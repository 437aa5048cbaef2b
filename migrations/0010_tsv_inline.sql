-- Chunk stores keep their tsvector in the row (STORAGE MAIN), not in the TOAST table.
--
-- BM25 reads the tsvector of every candidate chunk. With the default storage (EXTENDED) a
-- row wider than ~2 kB (content, tsvector and a 384-dim vector) moved its largest value out
-- of line, and for long chunks that was the tsvector: each candidate then cost a TOAST index
-- lookup as well. MAIN keeps it in the heap page the bitmap scan reads anyway; content and
-- the vector go out of line first. Rows written before keep their place until written again.
-- rag._sync_keyword_index gives new stores the same storage.
DO $$
DECLARE
    store regclass;
BEGIN
    FOR store IN
        SELECT a.attrelid::regclass
        FROM pg_catalog.pg_attribute AS a
        JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'rag'::regnamespace AND c.relkind IN ('r', 'p')
          AND a.attname = 'tsv' AND a.atttypid = 'tsvector'::regtype AND NOT a.attisdropped
          AND a.attstorage <> 'm'
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %s ALTER COLUMN tsv SET STORAGE MAIN', store);
        EXCEPTION WHEN feature_not_supported THEN
            -- Citus refuses SET STORAGE on a distributed table; its shards keep the default.
            RAISE NOTICE 'pgask: % keeps its tsvector storage (%)', store, SQLERRM;
        END;
    END LOOP;
END
$$;
