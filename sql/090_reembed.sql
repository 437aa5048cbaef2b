-- Re-embedding without downtime: a new embedding set is built in the background, then
-- switched to atomically.

-- rag._switch_set(pipeline): makes a finished rag.reembed set the active one and drops the
-- old chunk table, in one transaction; a no-op if rows of the new set are still queued, if
-- another transaction holds the pipeline's row, or if searches hold the old table for more
-- than about 2 seconds (the next call tries again). It never waits in a lock queue, where
-- searches and a sync pipeline's writers would wait behind it.
CREATE OR REPLACE FUNCTION rag._switch_set(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    e rag.embedders;
    locked boolean := false;
BEGIN
    -- NO KEY: a writer's queue insert checks its foreign key to this row (FOR KEY SHARE).
    -- SKIP LOCKED: a transaction changing the pipeline means later.
    SELECT * INTO p FROM rag.pipelines AS x WHERE x.name = pipeline
    FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT found OR p.building_set IS NULL OR EXISTS (
        SELECT 1 FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.embedding_set = p.building_set
    ) OR EXISTS (
        SELECT 1 FROM rag.inbox AS i WHERE i.pipeline = p.name
    ) THEN
        RETURN;
    END IF;
    -- Searches hold the old table (and the view over it) until their transaction ends
    -- (rag.search opens it first): the switch takes them only when free, NOWAIT, trying
    -- again every 50 ms.
    FOR attempt IN 1..40 LOOP
        BEGIN
            EXECUTE format('LOCK TABLE rag.%I, rag.%I IN ACCESS EXCLUSIVE MODE NOWAIT',
                p.name || '_chunks', rag._store(p.name, p.active_set));
            locked := true;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
    IF NOT locked THEN
        RETURN;
    END IF;
    SELECT * INTO e FROM rag.embedders AS x WHERE x.name = p.building_embedder;
    UPDATE rag.pipelines AS x SET
        active_set = p.building_set, embedder = e.name, embedding_model = e.model,
        dimensions = e.dimensions, building_set = NULL, building_embedder = NULL
    WHERE x.name = p.name;
    PERFORM rag._point_view(p.name);
    EXECUTE format('DROP TABLE rag.%I', rag._store(p.name, p.active_set));
    PERFORM rag._forget_store(rag._store(p.name, p.active_set));
    DELETE FROM rag.queue AS q WHERE q.pipeline = p.name AND q.embedding_set = p.active_set;
END;
$$;
COMMENT ON FUNCTION rag._switch_set IS
'SECURITY DEFINER: the switch drops and re-points objects of pgask_owner';

-- rag._begin_reembed(pipeline, new_set, embedder): records the set a rag.reembed builds.
-- SECURITY DEFINER: rag.pipelines belongs to pgask_owner; for admins.
CREATE OR REPLACE FUNCTION rag._begin_reembed(pipeline text, new_set integer, embedder text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.reembed');
    IF to_regclass(format('rag.%I', rag._store(pipeline, new_set))) IS NULL
            OR NOT EXISTS (SELECT FROM rag.embedders AS e WHERE e.name = _begin_reembed.embedder)
    THEN
        RAISE EXCEPTION 'rag.reembed: no chunk table % or embedder %', new_set, embedder
            USING errcode = 'invalid_parameter_value';
    END IF;
    UPDATE rag.pipelines AS x SET building_set = _begin_reembed.new_set,
        building_embedder = _begin_reembed.embedder
    WHERE x.name = _begin_reembed.pipeline AND x.building_set IS NULL;
END;
$$;
COMMENT ON FUNCTION rag._begin_reembed(text, integer, text) IS
'SECURITY DEFINER: rag.pipelines belongs to pgask_owner; admins change it only through it';

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
    IF p.broken IS NOT NULL THEN
        RAISE EXCEPTION 'rag.reembed: pipeline % is broken: %', p.name, p.broken
            USING errcode = 'invalid_parameter_value',
            hint = 'rag.alter_pipeline repairs a dropped metadata or title column; '
                'rag.drop_pipeline removes the pipeline.';
    END IF;
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
    -- A Citus-distributed pipeline builds the new set distributed too (150_distribution.sql).
    PERFORM rag._distribute_new_set(p.name, new_set);
    PERFORM rag._begin_reembed(p.name, new_set, e.name);
    -- The new chunk table gets the source's access rules, and pgask's workers their grants.
    PERFORM rag._sync_security(p.name);
    -- Every row, for the new set (the workers read them as the source's owner); writes
    -- captured from now on are queued for both sets. A table with no rows switches on the
    -- next rag.process_queue.
    PERFORM rag._reconcile(p.name, 'all', new_set);
    -- Rows written while this transaction is open are drained for the sets others see (not
    -- this one yet): once it commits, the workers check the new set again.
    PERFORM rag._request_check(p.name, 'building');
END;
$$;
