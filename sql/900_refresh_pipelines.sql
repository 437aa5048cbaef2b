-- Every install brings existing pipelines to this version: capture triggers and functions of
-- earlier versions go (with them, anything that evaluated a pipeline's SQL in a writer's
-- transaction), each pipeline gets this version's capture and visibility functions, access
-- rules and capture triggers, and follows any DDL on its source that happened while no
-- event trigger was watching (rag._refresh_pipeline). A pipeline defined before readers
-- existed (an upgrade: rag.pipelines.bind_at_install, set by migration 0011 only) is bound
-- to its source once, here, and has every row checked once (its keys' text may differ from
-- what this version writes). No other pipeline is bound by `pgask install`: a superuser
-- would run SQL that someone else wrote as the table's owner; a reader that no longer fits
-- leaves its pipeline broken until a member of the source owner's role binds it again
-- (rag.alter_pipeline). A pipeline that cannot be refreshed is marked broken with the
-- reason; the install goes on.
DROP FUNCTION IF EXISTS rag._capture_truncate() CASCADE;
DROP FUNCTION IF EXISTS rag._enqueue(text, text[]);
DROP FUNCTION IF EXISTS rag._forget(text, text[]);
DROP FUNCTION IF EXISTS rag._truncate(text);
DO $$
DECLARE
    p rag.pipelines;
    suffix text;
    upgraded boolean;
BEGIN
    FOR p IN SELECT * FROM rag.pipelines LOOP
        FOREACH suffix IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format('DROP FUNCTION IF EXISTS rag.%I() CASCADE',
                'pgask_' || p.name || '_' || suffix);
        END LOOP;
        upgraded := p.bind_at_install;
        IF p.key_attnums IS NULL THEN
            UPDATE rag.pipelines AS x SET key_attnums = (
                SELECT array_agg(k.attnum::smallint ORDER BY k.n)
                FROM pg_index AS i
                CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                WHERE i.indrelid = p.source AND i.indisprimary)
            WHERE x.name = p.name;
        END IF;
        -- A chunk table without its embedding column (DROP EXTENSION vector CASCADE took
        -- it): made anew, empty; every row is embedded again below.
        FOREACH suffix IN ARRAY ARRAY[p.active_set::text, p.building_set::text] LOOP
            CONTINUE WHEN suffix IS NULL OR EXISTS (
                SELECT FROM pg_attribute AS a
                WHERE a.attrelid = to_regclass(
                    format('rag.%I', rag._store(p.name, suffix::integer)))
                    AND a.attname = 'embedding' AND NOT a.attisdropped);
            EXECUTE format('DROP VIEW IF EXISTS rag.%I', p.name || '_chunks');
            EXECUTE format('DROP TABLE IF EXISTS rag.%I', rag._store(p.name, suffix::integer));
            PERFORM rag._forget_store(rag._store(p.name, suffix::integer));
            PERFORM rag._create_store(p.name, suffix::integer, CASE
                WHEN suffix::integer = p.active_set THEN p.dimensions
                ELSE (SELECT e.dimensions FROM rag.embedders AS e
                    WHERE e.name = p.building_embedder) END);
            upgraded := true;
        END LOOP;
        IF to_regclass(format('rag.%I', p.name || '_chunks')) IS NULL THEN
            PERFORM rag._point_view(p.name);
        END IF;
        PERFORM rag._sync_sentence_columns(p.name, s.embedding_set),
            rag._sync_keyword_index(p.name, s.embedding_set)
        FROM unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source);
        BEGIN
            PERFORM rag._install_capture(p.name);
            PERFORM rag._install_visibility(p.name);
            IF p.bind_at_install THEN
                PERFORM rag._bind_source(p.name, 'pgask install');
                UPDATE rag.pipelines AS x SET bind_at_install = false WHERE x.name = p.name;
            ELSE
                -- Capture triggers only (a superuser may create them on any table; nothing
                -- of the pipeline's SQL runs).
                PERFORM rag._attach_capture(p.name, reenable => false);
            END IF;
            PERFORM rag._refresh_pipeline(p.name);
            IF upgraded THEN
                PERFORM rag._request_check(p.name, 'missing');
            END IF;

        EXCEPTION WHEN others THEN
            PERFORM rag._mark_broken(p.name, format('pgask install could not bind it to its '
                'source: %s', sqlerrm));
        END;
    END LOOP;
END;
$$;
