-- Capture and queue: a write to a source table appends the keys of the rows it touched to
-- rag.inbox, and nothing else; rag.process_queue turns them into jobs (rag.queue), reads
-- the rows through the pipeline's reader (sql/075_source_binding.sql), chunks and embeds
-- them outside the writer's transaction, and deletes the chunks of rows that are gone.
-- Logic of the processing: pgask/queue.py.
-- (Over 400 lines: capture, draining, reconciling and the queue's entry points share one
-- inbox and one queue; split, each would need the others' details.)

-- rag._request_check(pipeline, scope): asks the workers to check every row of the source
-- again: 'missing' (rows without chunks, chunks without rows: after a TRUNCATE), 'all'
-- (every row: a new pipeline, new chunker or metadata, a rewrite or a change of the table's
-- shape), or 'building' ('missing' for a re-embed's new set, once its transaction has
-- committed: rows written meanwhile). One append; the work happens in rag.process_queue
-- (rag._reconcile).
CREATE OR REPLACE FUNCTION rag._request_check(pipeline text, scope text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO rag.inbox (pipeline, scope) VALUES (pipeline, scope)
$$;

-- rag._capture_sql(pipeline): the CREATE OR REPLACE FUNCTION of the trigger function that
-- every capture trigger of the pipeline calls, with the key's SQL written in (plans are
-- cached per connection). It appends the keys of the rows the statement touched (inserted,
-- deleted, and both old and new for an update) to rag.inbox as one row, under
-- rag._pinned_settings so a key's text is the same in every session; a TRUNCATE asks for a
-- check of every row. It evaluates no expression of the pipeline and runs nothing of the
-- table owner's (keys become text through their types' output functions), takes no lock but
-- the append's, sends no NOTIFY (so the writer's transaction can always be PREPAREd), and
-- never fails the write: a key that no longer fits (DDL pgask did not see) asks for a check
-- of every row instead. After a restore (the source has another OID than the one written
-- in) it still records the writes: it finds the source by the pipeline's name; the reader,
-- bound to the old OID, then stops the pipeline as broken until rag.alter_pipeline. A sync
-- pipeline then processes the rows at once, in the writer's transaction (READ COMMITTED
-- only; at most sync_max_rows rows, and only while less than half of statement_timeout is
-- spent), leaving in the inbox whatever it could not finish,
-- and turning any failure into a WARNING; a cancel still cancels.
CREATE OR REPLACE FUNCTION rag._capture_sql(pipeline text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._capture_sql');
    key_text text := rag._key_text_sql(p.source, p.key_attnums);
    record_keys text;
    process text := '';
BEGIN
    IF key_text IS NULL THEN
        -- A key column is gone (the pipeline is broken): nothing to record.
        record_keys := 'RETURN NULL;';
    ELSE
        record_keys := format(
            'BEGIN'
            ' IF tg_op = ''INSERT'' THEN ids := ARRAY(SELECT %1$s FROM new_rows AS s);'
            ' ELSIF tg_op = ''DELETE'' THEN ids := ARRAY(SELECT %1$s FROM old_rows AS s);'
            ' ELSE ids := ARRAY(SELECT %1$s FROM new_rows AS s UNION SELECT %1$s FROM old_rows AS s);'
            ' END IF;'
            ' EXCEPTION WHEN others THEN'
            ' INSERT INTO rag.inbox (pipeline, scope) VALUES (%2$L, ''all''); RETURN NULL;'
            ' END;', key_text, p.name);
    END IF;
    IF p.mode = 'sync' THEN
        process := format(
            ' IF current_setting(''transaction_isolation'') = ''read committed'' THEN'
            ' BEGIN'
            ' ids := rag._process_now(%1$L, ids);'
            ' IF cardinality(ids) = 0 THEN DELETE FROM rag.inbox WHERE ctid = appended;'
            ' ELSE UPDATE rag.inbox SET document_ids = ids WHERE ctid = appended; END IF;'
            ' EXCEPTION WHEN others OR query_canceled THEN'
            -- A cancel is the user's: it ends the statement. A statement timeout that struck
            -- while pgask worked is pgask's: the write goes on (rag._process_now stops well
            -- before statement_timeout, so this is rare).
            -- (Told apart by the time spent, not by the message, which lc_messages translates.)
            ' IF SQLSTATE = ''57014'' AND NOT coalesce((SELECT s.setting::float8 > 0 AND'
            ' 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp())'
            ' >= s.setting::float8 FROM pg_catalog.pg_settings AS s'
            ' WHERE s.name = ''statement_timeout''), false) THEN RAISE; END IF;'
            ' RAISE WARNING ''pgask: pipeline %%: %% (the rows stay queued for rag.process_queue)'','
            ' %1$L, regexp_replace(SQLERRM, ''^([a-z_]+\.)*[A-Z][A-Za-z]+: '', '''');'
            ' END;'
            ' END IF;', p.name);
    END IF;
    RETURN format(
        'CREATE OR REPLACE FUNCTION rag.%1$I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER'
        ' SET search_path = pg_catalog, pg_temp%2$s AS $capture$'
        ' DECLARE ids text[]; appended tid; BEGIN'
        -- Another table than the source's OID written here: a restore (the table has a new
        -- OID; rag.pipelines.source, a regclass, was restored by name) or a trigger put on
        -- another table. Only then is rag.pipelines read (the fast path stays one compare).
        ' IF tg_relid <> %3$s AND pg_partition_root(tg_relid) IS DISTINCT FROM %3$s::regclass THEN'
        ' IF NOT EXISTS (SELECT FROM rag.pipelines AS p WHERE p.name = %4$L'
        ' AND p.source IN (tg_relid, pg_partition_root(tg_relid))) THEN RETURN NULL; END IF;'
        ' END IF;'
        ' IF tg_op = ''TRUNCATE'' THEN'
        ' INSERT INTO rag.inbox (pipeline, scope) VALUES (%4$L, ''missing''); RETURN NULL;'
        ' END IF;'
        ' %5$s'
        ' IF cardinality(ids) > 0 THEN'
        ' INSERT INTO rag.inbox (pipeline, document_ids) VALUES (%4$L, ids) RETURNING ctid INTO appended;'
        ' %6$s'
        ' END IF;'
        ' RETURN NULL; END; $capture$',
        'pgask_' || p.name || '_capture', rag._pinned_settings(), p.source::oid, p.name,
        record_keys, process);
END;
$$;

-- rag._install_capture(pipeline): (re)creates the pipeline's capture function (the triggers
-- that call it are made by rag._attach_capture, as the table's owner). Re-run when the key
-- changes (a renamed or retyped key column), at every install and rag.alter_pipeline.
-- SECURITY DEFINER: pgask_owner owns the function, so that writers run it as pgask_owner.
CREATE OR REPLACE FUNCTION rag._install_capture(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- (Citus: pgask's functions live on the coordinator only; see docs/scale-out.md)
SET "citus.enable_ddl_propagation" = off
AS $$
DECLARE
    function_name text := 'pgask_' || pipeline || '_capture';
    statement text := rag._capture_sql(pipeline);
BEGIN
    -- Unchanged (its body starts with the digest of what made it): left alone. Replacing a
    -- function locks its catalog row: two DDLs on partitions of one source would wait for
    -- each other, then fail.
    IF EXISTS (
        SELECT FROM pg_proc AS f
        WHERE f.oid = to_regprocedure(format('rag.%I()', function_name))
            AND f.prosrc LIKE ' -- ' || md5(statement) || E'\n%'
    ) THEN
        RETURN;
    END IF;
    statement := regexp_replace(statement, '\$capture\$', '$capture$ -- ' || md5(statement) || E'\n');
    EXECUTE statement;
    -- Trigger functions cannot be called directly; EXECUTE is for whoever creates the
    -- triggers (the source's owner, or whoever adds a partition). A trigger put on another
    -- table records nothing (the function checks the table).
    EXECUTE format('REVOKE ALL ON FUNCTION rag.%I() FROM PUBLIC', function_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION rag.%I() TO PUBLIC', function_name);
    EXECUTE format('COMMENT ON FUNCTION rag.%I() IS %L', function_name,
        'SECURITY DEFINER: writers of the source append to rag.inbox, which they may not write');
END;
$$;
COMMENT ON FUNCTION rag._install_capture(text) IS
'SECURITY DEFINER: pgask_owner owns the capture functions, which writers run as it';

-- rag._capture_targets(pipeline): the tables whose writes the pipeline captures: the source
-- and, for a partitioned source, every partition at every level (a write naming a partition
-- fires only that partition's statement triggers).
CREATE OR REPLACE FUNCTION rag._capture_targets(pipeline text)
RETURNS SETOF regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.source FROM rag.pipelines AS p WHERE p.name = pipeline
    UNION
    SELECT t.relid::regclass FROM rag.pipelines AS p
    CROSS JOIN LATERAL rag._partition_tree(p.source) AS t (relid)
    WHERE p.name = pipeline
$$;

-- rag._lock_nowait(tables, mode, caller): locks the tables without ever waiting in the lock
-- queue (a request that waits there makes every later writer wait behind it): it tries
-- NOWAIT, sleeps 50 ms, and tries again, for about 5 seconds; then raises SQLSTATE 55P03
-- naming the caller. Invoker rights: the caller must be allowed to lock them.
CREATE OR REPLACE FUNCTION rag._lock_nowait(tables regclass[], mode text, caller text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF upper(mode) NOT IN ('ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE',
            'SHARE UPDATE EXCLUSIVE', 'SHARE', 'SHARE ROW EXCLUSIVE', 'EXCLUSIVE',
            'ACCESS EXCLUSIVE') THEN
        RAISE EXCEPTION 'rag._lock_nowait: mode must be a table lock mode, got %', mode
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF cardinality(tables) = 0 THEN
        RETURN;
    END IF;
    FOR attempt IN 1..100 LOOP
        BEGIN
            EXECUTE format('LOCK TABLE %s IN %s MODE NOWAIT',
                (SELECT string_agg(t::text, ', ') FROM unnest(tables) AS t), mode);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
    RAISE EXCEPTION '%: % is in use by another transaction; pgask does not wait for it (the '
        'table''s writers would wait behind): try again when it ends', caller,
        array_to_string(tables, ', ')
        USING errcode = 'lock_not_available';
END;
$$;

-- rag._attach_capture(pipeline, reenable): creates the capture triggers missing on the
-- pipeline's targets, as the current role (which must own them: rag._bind_source and
-- rag.alter_pipeline run it as the source's owner, the DDL event trigger as whoever created
-- or attached a partition), and makes them fire ALWAYS: also under session_replication_role
-- = replica (logical replication applying changes). A trigger the table's owner disabled is
-- enabled again only when `reenable` (a repair asked for; not the event trigger's). Never
-- queues for the tables' locks (rag._lock_nowait).
DROP FUNCTION IF EXISTS rag._attach_capture(text);
CREATE OR REPLACE FUNCTION rag._attach_capture(pipeline text, reenable boolean DEFAULT TRUE)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target regclass;
    event text;
    trigger_name text;
    enable text;
    capture regprocedure := to_regprocedure(format('rag.%I()', 'pgask_' || pipeline || '_capture'));
BEGIN
    PERFORM rag._lock_nowait(ARRAY(
        SELECT DISTINCT t.target FROM rag._capture_targets(pipeline) AS t (target)
        CROSS JOIN unnest(ARRAY['insert', 'update', 'delete', 'truncate']) AS e (event)
        WHERE NOT EXISTS (SELECT FROM pg_trigger AS g WHERE g.tgrelid = t.target
            AND g.tgname = 'pgask_' || pipeline || '_' || e.event
            AND (g.tgenabled = 'A' OR (g.tgenabled <> 'O' AND NOT reenable))
            AND g.tgfoid = capture)
        ORDER BY t.target
    ), 'SHARE ROW EXCLUSIVE', format('pipeline %s', pipeline));
    FOR target IN SELECT rag._capture_targets(pipeline) LOOP
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            trigger_name := 'pgask_' || pipeline || '_' || event;
            IF EXISTS (SELECT FROM pg_trigger AS t WHERE t.tgrelid = target
                    AND t.tgname = trigger_name AND t.tgfoid IS DISTINCT FROM capture) THEN
                EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, target);
            END IF;
            IF NOT EXISTS (
                SELECT FROM pg_trigger AS t WHERE t.tgrelid = target AND t.tgname = trigger_name
            ) THEN
                EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT'
                    ' EXECUTE FUNCTION rag.%I()', trigger_name, upper(event), target,
                    CASE event
                        WHEN 'insert' THEN 'REFERENCING NEW TABLE AS new_rows'
                        WHEN 'update' THEN 'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                        WHEN 'delete' THEN 'REFERENCING OLD TABLE AS old_rows'
                        ELSE ''
                    END,
                    'pgask_' || pipeline || '_capture');
            END IF;
        END LOOP;
        -- (One ALTER TABLE per table: each is a DDL command the event triggers follow.)
        SELECT string_agg(format('ENABLE ALWAYS TRIGGER %I', t.tgname), ', ' ORDER BY t.tgname)
        INTO enable
        FROM pg_trigger AS t
        WHERE t.tgrelid = target AND t.tgfoid = capture
            AND (t.tgenabled = 'O' OR (t.tgenabled <> 'A' AND reenable));
        IF enable IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s %s', target, enable);
        END IF;
    END LOOP;
END;
$$;

-- rag._install_visibility(pipeline): (re)creates rag.pgask_<pipeline>_visible(document_id):
-- whether the source row with that key exists and the calling role may see it (the
-- source's row-level security applies, as the caller). rag.search keeps only chunks whose
-- row is visible (so a deleted row disappears from search when its DELETE commits), and
-- the chunk tables' policy uses it for sources with row-level security. Every name in it is
-- qualified, and it pins search_path, which also keeps the planner from inlining it: a
-- role the policy does not restrict (pgask's workers, by a policy of their own) never
-- parses it, so needs no USAGE on the source's schema. For a key whose type is not trusted
-- (rag._key_columns) it returns false; so it does for a key that no longer converts to the
-- key's type (a text key retyped to int, an enum value renamed: its row is gone, its chunks
-- wait for a worker), rather than fail every search. Its body is not checked when it is
-- created (pgask_owner need not be able to name the source's schema), but when it runs.
-- SECURITY DEFINER: pgask_owner owns the function it creates.
CREATE OR REPLACE FUNCTION rag._install_visibility(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- (Citus: pgask's functions live on the coordinator only; see docs/scale-out.md)
SET "citus.enable_ddl_propagation" = off
SET check_function_bodies = off
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._install_visibility');
    function_name text := 'pgask_' || p.name || '_visible';
    match text;
    body text;
BEGIN
    IF EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source) THEN
        match := rag._key_match_sql(p.source, p.key_attnums, '$1');
    END IF;
    -- (A data exception is a key that does not convert: no such row. Anything else, a
    -- privilege or a cancel, is raised.)
    body := CASE
        WHEN match IS NULL THEN ' BEGIN RETURN false; END '
        ELSE format(' BEGIN RETURN EXISTS (SELECT FROM %s AS s WHERE %s);'
            ' EXCEPTION WHEN data_exception THEN RETURN false; END ', p.source, match)
    END;
    IF EXISTS (  -- unchanged: left alone (as rag._install_capture)
        SELECT FROM pg_proc AS f
        WHERE f.oid = to_regprocedure(format('rag.%I(text)', function_name))
            AND f.prosrc = body AND f.prolang = (SELECT l.oid FROM pg_language AS l
                WHERE l.lanname = 'plpgsql')
            AND f.proconfig = '{"search_path=pg_catalog, pg_temp"}' AND NOT f.prosecdef
            AND f.provolatile = 's'
    ) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION rag.%I(document_id text) RETURNS boolean'
        ' LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS %L', function_name,
        body);
    EXECUTE format('REVOKE ALL ON FUNCTION rag.%I(text) FROM PUBLIC', function_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION rag.%I(text) TO PUBLIC', function_name);
END;
$$;
COMMENT ON FUNCTION rag._install_visibility(text) IS
'SECURITY DEFINER: pgask_owner owns the visibility functions (which run as the reader)';

-- (Returned nothing before 0.3: replaced, not altered.)
DO $$
BEGIN
    IF (SELECT f.prorettype FROM pg_proc AS f
            WHERE f.oid = to_regprocedure('rag._process_now(text, text[])')) = 'void'::regtype THEN
        DROP FUNCTION rag._process_now(text, text[]);
    END IF;
END;
$$;

-- rag._process_now(pipeline, ids): a sync pipeline's processing inside the writer's
-- transaction (called by its capture function, so it runs as pgask_owner); returns the keys
-- it left for rag.process_queue (rows that are gone, or whose embedding failed).
CREATE OR REPLACE FUNCTION rag._process_now(pipeline text, ids text[])
RETURNS text[]
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import queue
return queue.process_now(plpy, pipeline, ids)
$$;

-- rag._max_key_bytes(): the longest key text, in bytes, that pgask queues (stated here
-- only). A job's key is in rag.queue's unique index and a chunk's in its table's
-- (document_id, ordinal) index, and a btree entry holds at most about 2700 bytes: a longer
-- key would fail every move of the inbox. A key over it becomes a dead letter saying so
-- (rag._queue_jobs).
CREATE OR REPLACE FUNCTION rag._max_key_bytes()
RETURNS integer
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 2000
$$;

-- rag._drain_inbox(pipeline, max_rows): moves at most max_rows keys (a request to check
-- every row counts as one) of captured statements, oldest first, from rag.inbox into
-- rag.queue (all pipelines when pipeline is NULL), one job per key and embedding set: a
-- statement with more keys than are left is split (the rest stays, with its time), so one
-- move stays a short transaction whatever one statement wrote. A job already queued gets a
-- new generation, so an older in-flight result is not taken as final. Keys whose job is
-- leased now go back to the inbox until the lease ends: the drain never waits on a worker's
-- locks. Each pipeline's keys are queued in one statement, in key order, so two drains
-- never deadlock. A request to check every row runs rag._reconcile. Captured writes of a
-- dropped pipeline are discarded. Each pipeline is moved in its own subtransaction: one
-- that fails (a WARNING says why) leaves its rows in the inbox for the next move and its
-- keys to the others. Returns the keys taken.
CREATE OR REPLACE FUNCTION rag._drain_inbox(pipeline text, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    budget bigint := greatest(coalesce(max_rows, 0), 0);
    seen text[] := '{}';
    any_failed boolean;
    row_ids tid[];
    row_pipelines text[];
    row_takes integer[];
    mine tid[];
    one_pipeline text;
    first_enqueued timestamptz;
    scopes text[];
    ids text[];
    moved bigint;
    sets integer[];
    keys text[];
    waiting text[];
    total bigint := 0;
BEGIN
    LOOP
        EXIT WHEN budget <= 0;
        -- The oldest captured statements, up to `budget` keys; the last one taken may be
        -- taken in part (row_takes: how many of its keys).
        SELECT coalesce(array_agg(c.row_id), '{}'), coalesce(array_agg(c.pipeline), '{}'),
            coalesce(array_agg(least(c.n, budget - c.before)::integer), '{}')
        INTO row_ids, row_pipelines, row_takes
        FROM (
            SELECT l.row_id, l.pipeline, l.n,
                sum(l.n) OVER (ORDER BY l.enqueued_at, l.row_id ROWS UNBOUNDED PRECEDING)
                - l.n AS before
            FROM (
                SELECT x.ctid AS row_id, x.pipeline, x.enqueued_at,
                    greatest(coalesce(cardinality(x.document_ids), 0), 1) AS n
                FROM rag.inbox AS x
                WHERE (_drain_inbox.pipeline IS NULL OR x.pipeline = _drain_inbox.pipeline)
                    AND x.pipeline <> ALL(seen)
                ORDER BY x.enqueued_at
                LIMIT budget
                FOR UPDATE SKIP LOCKED
            ) AS l
        ) AS c
        WHERE c.before < budget;
        EXIT WHEN cardinality(row_ids) = 0;
        any_failed := false;
        FOR one_pipeline IN SELECT DISTINCT u.p FROM unnest(row_pipelines) AS u (p) ORDER BY 1 LOOP
            seen := seen || one_pipeline;
            mine := ARRAY(SELECT u.row_id FROM unnest(row_ids, row_pipelines) AS u (row_id, p)
                WHERE u.p = one_pipeline);
            BEGIN
                SELECT min(i.enqueued_at),
                    array_agg(DISTINCT i.scope) FILTER (WHERE i.scope IS NOT NULL),
                    sum(t.take),
                    ARRAY(SELECT DISTINCT k.id FROM rag.inbox AS j
                        INNER JOIN unnest(row_ids, row_takes) AS v (row_id, take)
                            ON v.row_id = j.ctid
                        CROSS JOIN unnest(j.document_ids[1:v.take]) AS k (id)
                        WHERE j.ctid = ANY(mine) ORDER BY k.id)
                INTO first_enqueued, scopes, moved, ids
                FROM rag.inbox AS i
                INNER JOIN unnest(row_ids, row_takes) AS t (row_id, take) ON t.row_id = i.ctid
                WHERE i.ctid = ANY(mine);
                DELETE FROM rag.inbox AS i USING unnest(row_ids, row_takes) AS t (row_id, take)
                WHERE i.ctid = ANY(mine) AND t.row_id = i.ctid
                    AND t.take >= coalesce(cardinality(i.document_ids), 0);
                UPDATE rag.inbox AS i SET document_ids = i.document_ids[t.take + 1:]
                FROM unnest(row_ids, row_takes) AS t (row_id, take)
                WHERE i.ctid = ANY(mine) AND t.row_id = i.ctid
                    AND t.take < cardinality(i.document_ids);
                SELECT array_remove(ARRAY[p.active_set, p.building_set], NULL) INTO sets
                FROM rag.pipelines AS p WHERE p.name = one_pipeline;
                IF sets IS NULL THEN  -- a dropped pipeline: discarded
                    total := total + greatest(cardinality(ids), 1);
                ELSE
                    IF 'all' = ANY(scopes) THEN  -- (covers the others)
                        PERFORM rag._reconcile(one_pipeline, 'all');
                    ELSIF 'missing' = ANY(scopes) THEN  -- (covers 'building')
                        PERFORM rag._reconcile(one_pipeline, 'missing');
                    ELSIF 'building' = ANY(scopes) THEN
                        PERFORM rag._reconcile(one_pipeline, 'missing', p.building_set)
                        FROM rag.pipelines AS p
                        WHERE p.name = one_pipeline AND p.building_set IS NOT NULL;
                    END IF;
                    SELECT
                        coalesce(array_agg(k.id ORDER BY k.id) FILTER (WHERE NOT k.leased), '{}'),
                        coalesce(array_agg(k.id ORDER BY k.id) FILTER (WHERE k.leased), '{}')
                    INTO keys, waiting
                    FROM (
                        SELECT u.id, EXISTS (
                            SELECT FROM rag.queue AS q
                            WHERE q.pipeline = one_pipeline AND q.document_id = u.id
                                AND q.leased_until >= now()
                        ) AS leased
                        FROM unnest(ids) AS u (id)
                    ) AS k;
                    PERFORM rag._queue_jobs(one_pipeline, sets, keys, first_enqueued);
                    IF cardinality(waiting) > 0 THEN
                        INSERT INTO rag.inbox (pipeline, document_ids, enqueued_at)
                        VALUES (one_pipeline, waiting, first_enqueued);
                    END IF;
                    total := total + coalesce(cardinality(scopes), 0) + cardinality(keys);
                END IF;
                budget := budget - moved;
            EXCEPTION WHEN others THEN
                -- (Its rows are back in the inbox; its keys go to the other pipelines. A
                -- cancel is not caught: it ends the move.)
                any_failed := true;
                RAISE WARNING 'pgask: pipeline %: its captured writes stay in rag.inbox: %',
                    one_pipeline, sqlerrm;
            END;
        END LOOP;
        -- Another round only for what a failed pipeline left of the budget.
        EXIT WHEN NOT any_failed;
    END LOOP;
    RETURN total;
END;
$$;

-- rag._queue_jobs(pipeline, sets, keys, enqueued_at): a job per key and embedding set; a job
-- already queued gets a new generation (and is pending again, its attempts reset). A key
-- over rag._max_key_bytes() is not queued: it becomes a dead letter (rag.dead_letters),
-- named by its first 100 characters, its length and its md5, saying why.
CREATE OR REPLACE FUNCTION rag._queue_jobs(
    pipeline text, sets integer[], keys text[], enqueued_at timestamptz
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- Key order, as workers finish them: two drains cannot deadlock.
    INSERT INTO rag.queue AS q (pipeline, embedding_set, document_id, enqueued_at)
    SELECT pipeline, s.embedding_set, k.id, enqueued_at
    FROM (SELECT DISTINCT u.id FROM unnest(keys) AS u (id)
        WHERE octet_length(u.id) <= rag._max_key_bytes()) AS k
    CROSS JOIN unnest(sets) AS s (embedding_set)
    ORDER BY s.embedding_set, k.id
    ON CONFLICT ON CONSTRAINT queue_job_key DO UPDATE
        SET generation = q.generation + 1, status = 'pending', attempts = 0,
        not_before = now(), enqueued_at = excluded.enqueued_at, last_error = NULL;
    INSERT INTO rag.queue AS q (
        pipeline, embedding_set, document_id, enqueued_at, status, last_error, last_attempt_at
    )
    SELECT pipeline, s.embedding_set,
        format('%s... (%s bytes, md5 %s)', left(k.id, 100), octet_length(k.id), md5(k.id)),
        enqueued_at, 'failed',
        format('key of %s bytes is over pgask''s limit of %s (rag._max_key_bytes)',
            octet_length(k.id), rag._max_key_bytes()),
        now()
    FROM (SELECT DISTINCT u.id FROM unnest(keys) AS u (id)
        WHERE octet_length(u.id) > rag._max_key_bytes()) AS k
    CROSS JOIN unnest(sets) AS s (embedding_set)
    ORDER BY 2, 3
    ON CONFLICT ON CONSTRAINT queue_job_key DO UPDATE
        SET generation = q.generation + 1, status = 'failed', not_before = now(),
        enqueued_at = excluded.enqueued_at, last_error = excluded.last_error,
        last_attempt_at = excluded.last_attempt_at;
$$;

-- rag._reconcile(pipeline, scope, only_set): the check of every row that a new pipeline, a
-- new chunker or metadata, a rewrite or a change of the table's shape (scope 'all': every
-- row) or a TRUNCATE (scope 'missing': rows without chunks and chunks without rows) asked
-- for: queues those keys for every embedding set (only `only_set` when given: a re-embed's
-- new set). The keys come from the reader (as the table's owner). A pipeline whose reader
-- cannot run is marked broken instead. SECURITY DEFINER: it reads the chunk tables as
-- pgask_owner, who may have just created them in the same transaction (Citus refuses a
-- distributed table's shards to a second role there).
DROP FUNCTION IF EXISTS rag._reconcile(text, text);
CREATE OR REPLACE FUNCTION rag._reconcile(pipeline text, scope text, only_set integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._reconcile');
    one_set integer;
    live text[];
    stored text[];
    keys text[];
BEGIN
    IF p.broken IS NOT NULL THEN
        RETURN;  -- repairing it asks again
    END IF;
    BEGIN
        live := ARRAY(SELECT DISTINCT r.document_id FROM rag._source_rows(p.name, 'keys', NULL) AS r);
    EXCEPTION WHEN others THEN
        PERFORM rag._mark_broken(p.name, format('its rows cannot be read: %s', sqlerrm));
        RETURN;
    END;
    FOREACH one_set IN ARRAY array_remove(ARRAY[p.active_set, p.building_set], NULL)
    LOOP
        CONTINUE WHEN only_set IS NOT NULL AND one_set <> only_set;
        -- (One statement per table: Citus plans a distributed chunk table's query alone.)
        EXECUTE format('SELECT ARRAY(SELECT DISTINCT c.document_id FROM rag.%I AS c)',
            rag._store(p.name, one_set))
        INTO stored;
        keys := ARRAY(
            SELECT k.id FROM unnest(live) AS k (id) WHERE scope = 'all'
            UNION
            (SELECT k.id FROM unnest(live) AS k (id)
                EXCEPT SELECT c.id FROM unnest(stored) AS c (id))
            UNION
            (SELECT c.id FROM unnest(stored) AS c (id)
                EXCEPT SELECT k.id FROM unnest(live) AS k (id)));
        IF scope <> 'all' THEN
            -- (A job already waiting for a key will read its row anyway: left alone, so a
            -- result in flight is not discarded.)
            keys := ARRAY(SELECT k.id FROM unnest(keys) AS k (id)
                WHERE NOT EXISTS (SELECT FROM rag.queue AS q WHERE q.pipeline = p.name
                    AND q.embedding_set = one_set AND q.document_id = k.id
                    AND q.status = 'pending'));
        END IF;
        PERFORM rag._queue_jobs(p.name, ARRAY[one_set], keys, now());
    END LOOP;
END;
$$;
COMMENT ON FUNCTION rag._reconcile(text, text, integer) IS
'SECURITY DEFINER: reads chunk tables pgask_owner may have created in this transaction';

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
    RETURN retried;
END;
$$;
