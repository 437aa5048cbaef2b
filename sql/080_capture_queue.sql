-- Capture and queue: triggers on source tables only record work (rag.queue);
-- rag.process_queue does the chunking and embedding outside the writer's transaction.
-- Logic of the processing: pgask/queue.py.

-- rag._enqueue(pipeline, ids): queues source rows for every set being maintained (the active
-- one and, during rag.reembed, the new one). Used for backfills; the generated capture
-- functions (rag._install_capture) inline the same INSERT so that writes stay cheap. A row
-- already queued gets a new generation, so an older in-flight result is not taken as final.
CREATE OR REPLACE FUNCTION rag._enqueue(pipeline text, ids text[])
RETURNS void
LANGUAGE plpgsql
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

-- rag._drain_inbox(pipeline, max_rows): moves up to max_rows captured writes (all pipelines
-- when pipeline is NULL) from rag.queue_inbox into rag.queue, one job per row and set; a job
-- already queued gets a new generation, so an older in-flight result is not taken as final.
-- Rows whose job is leased now stay in the inbox until the lease ends: the drain then never
-- waits on a worker's locks. Rows of a dropped pipeline are discarded. Returns the rows taken.
CREATE OR REPLACE FUNCTION rag._drain_inbox(pipeline text, max_rows integer)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH taken AS (
        DELETE FROM rag.queue_inbox AS i
        WHERE i.ctid = ANY(ARRAY(
            SELECT x.ctid FROM rag.queue_inbox AS x
            WHERE ($1 IS NULL OR x.pipeline = $1) AND NOT EXISTS (
                SELECT 1 FROM rag.queue AS q
                WHERE q.pipeline = x.pipeline AND q.embedding_set = x.embedding_set
                    AND q.document_id = x.document_id AND q.leased_until >= now())
            LIMIT $2
            FOR UPDATE SKIP LOCKED))
        RETURNING i.pipeline, i.embedding_set, i.document_id, i.enqueued_at
    ),
    queued AS (
        -- Key order, as rag._forget locks them: the two cannot deadlock.
        INSERT INTO rag.queue AS q (pipeline, embedding_set, document_id, enqueued_at)
        SELECT t.pipeline, t.embedding_set, t.document_id, min(t.enqueued_at)
        FROM taken AS t
        WHERE t.pipeline IN (SELECT p.name FROM rag.pipelines AS p)
        GROUP BY t.pipeline, t.embedding_set, t.document_id
        ORDER BY t.pipeline, t.embedding_set, t.document_id
        ON CONFLICT ON CONSTRAINT queue_job_key DO UPDATE
            SET generation = q.generation + 1, status = 'pending', attempts = 0,
            not_before = now(), enqueued_at = excluded.enqueued_at, last_error = NULL
        RETURNING 1
    )
    SELECT count(*) FROM taken;
$$;

-- rag._forget(pipeline, ids): source rows that are gone lose their chunks and queue entries,
-- in the deleting transaction.
CREATE OR REPLACE FUNCTION rag._forget(pipeline text, ids text[])
RETURNS void
LANGUAGE plpgsql
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
        IF rag._distributed(rag._store(p.name, embedding_set)) THEN
            -- No BM25 triggers on a Citus table: 150_distribution.sql keeps the statistics.
            PERFORM rag._delete_distributed_chunks(rag._store(p.name, embedding_set), ids);
            CONTINUE;
        END IF;
        EXECUTE format('DELETE FROM rag.%I WHERE document_id = ANY($1)',
            rag._store(p.name, embedding_set)) USING ids;
    END LOOP;
    -- Locked in key order, as rag._drain_inbox upserts them: the two cannot deadlock.
    DELETE FROM rag.queue AS q WHERE q.id IN (
        SELECT x.id FROM rag.queue AS x
        WHERE x.pipeline = p.name AND x.document_id = ANY(ids)
        ORDER BY x.embedding_set, x.document_id
        FOR UPDATE
    );
END;
$$;

-- rag._truncate(pipeline): TRUNCATE of the source empties the chunk tables and the queue.
CREATE OR REPLACE FUNCTION rag._truncate(pipeline text)
RETURNS void
LANGUAGE plpgsql
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
    DELETE FROM rag.queue AS q WHERE q.id IN (
        SELECT x.id FROM rag.queue AS x WHERE x.pipeline = p.name
        ORDER BY x.embedding_set, x.document_id
        FOR UPDATE
    );
    DELETE FROM rag.queue_inbox AS i WHERE i.pipeline = p.name;
END;
$$;

-- rag._capture_truncate(): the TRUNCATE trigger of every pipeline's source table.
-- SECURITY DEFINER: a writer's TRUNCATE empties chunk tables it has no privileges on.
CREATE OR REPLACE FUNCTION rag._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._truncate(tg_argv[0]);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION rag._capture_truncate() IS
'SECURITY DEFINER: a writer''s TRUNCATE must empty chunk tables it has no privileges on';

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
-- DROP ... IF EXISTS of what may not exist yet is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._install_capture');
    prefix text := 'pgask_' || p.name;
    jobs text;
    record_changes text;
    row_sql text;
    body text := 'CREATE OR REPLACE FUNCTION rag.%I() RETURNS trigger LANGUAGE plpgsql'
        ' SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$'
        ' DECLARE changed text[]; removed text[]; BEGIN %s RETURN NULL; END; $body$;'
        ' REVOKE ALL ON FUNCTION rag.%1$I() FROM public;'
        ' COMMENT ON FUNCTION rag.%1$I() IS ''SECURITY DEFINER: writers of the source queue'
        ' work and delete chunks in tables they have no privileges on''';
BEGIN
    -- What every function does with the keys in `changed`: queue them for each embedding set
    -- being maintained (written in; rag.reembed and its switch regenerate the functions).
    -- Async: append to rag.queue_inbox, the cheapest write there is (rag.process_queue turns
    -- it into jobs). Sync: upsert the jobs, which rag._process_now finishes at once.
    jobs := format('SELECT %L, sets.embedding_set, ids.document_id FROM unnest(changed) AS ids'
        ' (document_id) CROSS JOIN unnest(%L::integer[]) AS sets (embedding_set)',
        p.name, array_remove(ARRAY[p.active_set, p.building_set], NULL));
    record_changes := CASE WHEN p.mode = 'sync' THEN format(
        'IF cardinality(changed) > 0 THEN'
        ' INSERT INTO rag.queue AS q (pipeline, embedding_set, document_id) %s'
        ' ON CONFLICT ON CONSTRAINT queue_job_key'
        ' DO UPDATE SET generation = q.generation + 1, status = ''pending'', attempts = 0,'
        ' not_before = now(), enqueued_at = now(), last_error = NULL;'
        ' PERFORM rag._process_now(%L, changed); END IF;', jobs, p.name
    ) ELSE format(
        'IF cardinality(changed) > 0 THEN'
        ' INSERT INTO rag.queue_inbox (pipeline, embedding_set, document_id) %s;'
        ' PERFORM pg_notify(''rag_queue'', %L); END IF;', jobs, p.name
    ) END;
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

-- rag._process_now(pipeline, ids): sync mode's processing inside the writer's transaction
-- (called by the generated capture functions, so it runs as their owner).
CREATE OR REPLACE FUNCTION rag._process_now(pipeline text, ids text[])
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import queue
queue.process_now(plpy, pipeline, ids)
$$;

-- rag._process_queue(...): the PL/Python implementation behind rag.process_queue. A failure
-- comes back in error_state and error_message for the wrapper to raise, so no Python
-- traceback reaches the caller.
DROP PROCEDURE IF EXISTS rag._process_queue(
    text, integer, double precision, double precision, bigint
);
CREATE OR REPLACE PROCEDURE rag._process_queue(
    pipeline text,
    batch_size integer,
    max_seconds double precision,
    lease_seconds double precision,
    INOUT processed bigint DEFAULT NULL,
    INOUT error_state text DEFAULT NULL,
    INOUT error_message text DEFAULT NULL
)
LANGUAGE plpython3u
AS $$
#PGASK_PREAMBLE
from pgask import queue
return queue.process_queue_call(plpy, pipeline, batch_size, max_seconds, lease_seconds)
$$;

-- rag.process_queue(pipeline, batch_size, max_seconds, lease_seconds): claims queued rows
-- with a lease (FOR UPDATE SKIP LOCKED, so workers never share a row), commits, chunks and
-- embeds them (reusing the vectors of chunks whose text is unchanged), and writes the result
-- only if the source row still holds the content that was embedded and the lease is still
-- this call's; commits; repeats until the queue is empty or max_seconds have passed. Leases
-- are renewed before each embedding request and last at least the provider's timeout, so a
-- slow provider never lets a second worker take a row that is being embedded. Failures are
-- retried with exponential backoff and jitter, then kept as dead letters (rag.dead_letters).
-- `processed` returns the rows finished. It commits, so it refuses to run inside a
-- transaction block (SQLSTATE 25001): CALL rag.process_queue(); in autocommit mode.
-- (No SET search_path here: a procedure with one cannot commit; it pins the path itself.)
CREATE OR REPLACE PROCEDURE rag.process_queue(
    pipeline text DEFAULT NULL,
    batch_size integer DEFAULT 32,
    max_seconds double precision DEFAULT 60,
    lease_seconds double precision DEFAULT 300,
    INOUT processed bigint DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
    error_state text;
    error_message text;
BEGIN
    -- Before anything else: no name below may resolve through the caller's search_path.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF NOT pg_catalog.has_table_privilege('rag.queue', 'UPDATE') THEN
        RAISE EXCEPTION 'rag.process_queue: role % may not process the queue: it needs UPDATE '
            'on rag.queue (run it as the owner of schema rag, as `pgask worker` does)',
            current_user
            USING errcode = 'insufficient_privilege';
    END IF;
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
    -- (NaN compares greater than every number: it is caught here too.)
    IF max_seconds > 86400 OR lease_seconds > 86400 THEN
        RAISE EXCEPTION 'rag.process_queue: max_seconds and lease_seconds must be at most '
            '86400 (a day), got % and %', max_seconds, lease_seconds
            USING errcode = 'invalid_parameter_value';
    END IF;
    CALL rag._process_queue(pipeline, batch_size, max_seconds, lease_seconds, processed,
        error_state, error_message);
    IF error_state IS NOT NULL THEN
        RAISE EXCEPTION '%', error_message USING errcode = error_state;
    END IF;
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
