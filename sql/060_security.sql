-- Access rules: chunks follow their source table's grants and row-level security.

-- rag._source_acl_digest(source): what a pipeline's chunk access depends on: the source's
-- owner, its table and column privileges, whether it has row-level security, and its
-- schema's privileges (a role that may not use the schema may not read the table). Compared
-- with the digest recorded at the last sync, it tells the GRANT/REVOKE event trigger, at
-- the cost of one catalog read per pipeline, which pipelines a command changed.
CREATE OR REPLACE FUNCTION rag._source_acl_digest(source oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT md5(concat_ws(E'\x1f', c.relowner, c.relacl, c.relrowsecurity, (
        SELECT string_agg(a.attnum || ':' || a.attacl::text, ',' ORDER BY a.attnum)
        FROM pg_attribute AS a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL
    ), n.nspowner, n.nspacl))
    FROM pg_class AS c INNER JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = source
$$;

-- rag._sync_security(pipeline): chunks are copies of the source's rows, so they get exactly
-- the source's access rules, both ways. A role may SELECT a pipeline's chunk tables and view
-- when it may read what the chunks are built from: USAGE on its schema and SELECT on the
-- source table, or on every column that the key, content, title and metadata use (column
-- privileges); the source's owner may; PUBLIC when PUBLIC may; pgask_admin and pgask_worker
-- write them. Every other grant on them is revoked. When the source has row-level security
-- enabled, a policy shows a chunk only to a role that can see
-- its source row (rag.pgask_<pipeline>_visible runs the source's own policies, forced or
-- not, as the reader); pgask_owner, who runs the queue, owns the chunk tables and is exempt.
-- Only what differs is changed: GRANT and REVOKE take no lock on the chunk tables, and the
-- policy (which does, until the transaction ends) changes only when the source's row-level
-- security is switched on or off, by its owner, whose own table is locked as long. Run by
-- every install and pipeline change, and by the event triggers (sql/085_source_ddl.sql).
-- SECURITY DEFINER: the chunk tables belong to pgask_owner.
CREATE OR REPLACE FUNCTION rag._sync_security(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may not exist yet is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._sync_security');
    has_rls boolean;
    source_owner oid;
    needed smallint[];
    readers oid[];
    target text;
    target_oid oid;
    grantees text;
    wanted text;
    current_policy text;
BEGIN
    SELECT c.relrowsecurity, c.relowner INTO has_rls, source_owner
    FROM pg_class AS c WHERE c.oid = p.source;
    IF has_rls IS NULL THEN
        RETURN;  -- a broken pipeline whose source table was dropped (085_source_ddl.sql)
    END IF;
    -- Recorded first: the GRANTs below fire rag._on_grant again, which must find this
    -- pipeline in step (an error here rolls it back with the rest).
    UPDATE rag.pipelines AS x SET acl_digest = rag._source_acl_digest(p.source)
    WHERE x.name = p.name AND x.acl_digest IS DISTINCT FROM rag._source_acl_digest(p.source);
    -- The columns the chunks are built from: the key and every column the fragments use.
    needed := ARRAY(
        SELECT DISTINCT x.attnum::smallint FROM (
            SELECT unnest(p.key_attnums) AS attnum
            UNION ALL
            SELECT k::smallint FROM jsonb_object_keys(p.source_columns) AS k
        ) AS x
        INNER JOIN pg_attribute AS a ON a.attrelid = p.source AND a.attnum = x.attnum
            AND NOT a.attisdropped
    );
    SELECT coalesce(array_agg(DISTINCT x.grantee), '{}') INTO readers
    FROM (
        SELECT source_owner AS grantee
        UNION
        SELECT a.grantee FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = p.source AND a.privilege_type = 'SELECT'
        UNION
        SELECT a.grantee FROM pg_attribute AS t CROSS JOIN LATERAL aclexplode(t.attacl) AS a
        WHERE t.attrelid = p.source AND t.attnum = ANY(needed) AND a.privilege_type = 'SELECT'
    ) AS x
    CROSS JOIN LATERAL (
        SELECT (CASE WHEN x.grantee = 0 THEN 'public'
            ELSE (SELECT r.rolname FROM pg_roles AS r WHERE r.oid = x.grantee) END)::name AS name
    ) AS g
    WHERE g.name IS NOT NULL
        AND (x.grantee = source_owner OR has_schema_privilege(g.name, (SELECT c.relnamespace
            FROM pg_class AS c WHERE c.oid = p.source), 'USAGE'))
        AND (
            has_table_privilege(g.name, p.source, 'SELECT')
            OR NOT EXISTS (
                SELECT 1 FROM unnest(needed) AS n (attnum)
                WHERE NOT has_column_privilege(g.name, p.source, n.attnum, 'SELECT')
            )
        );
    FOREACH target IN ARRAY array_remove(ARRAY[
        rag._store(p.name, p.active_set), rag._store(p.name, p.building_set), p.name || '_chunks'
    ], NULL) LOOP
        target_oid := to_regclass(format('rag.%I', target));
        CONTINUE WHEN target_oid IS NULL;
        IF target <> p.name || '_chunks' THEN
            wanted := CASE WHEN has_rls
                THEN format('rag.%I(document_id)', 'pgask_' || p.name || '_visible')
                ELSE 'true' END;
            SELECT pg_get_expr(pol.polqual, pol.polrelid) INTO current_policy
            FROM pg_policy AS pol WHERE pol.polrelid = target_oid AND pol.polname = 'source_rows';
            IF NOT (SELECT c.relrowsecurity FROM pg_class AS c WHERE c.oid = target_oid) THEN
                EXECUTE format('ALTER TABLE rag.%I ENABLE ROW LEVEL SECURITY', target);
            END IF;
            IF current_policy IS DISTINCT FROM wanted THEN
                EXECUTE format('DROP POLICY IF EXISTS source_rows ON rag.%I', target);
                EXECUTE format('CREATE POLICY source_rows ON rag.%I FOR SELECT USING (%s)',
                    target, wanted);
            END IF;
            -- pgask's admins and workers write and read every chunk.
            IF NOT EXISTS (SELECT FROM pg_policy AS pol WHERE pol.polrelid = target_oid
                    AND pol.polname = 'pgask_writers') THEN
                EXECUTE format('CREATE POLICY pgask_writers ON rag.%I FOR ALL'
                    ' TO pgask_admin, pgask_worker USING (true) WITH CHECK (true)', target);
            END IF;
        END IF;
        SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            ELSE a.grantee::regrole::text END, ', ')
        INTO grantees
        FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = target_oid AND a.grantee <> c.relowner
            AND a.grantee NOT IN ('pgask_admin'::regrole, 'pgask_worker'::regrole)
            AND NOT (a.grantee = ANY(readers) AND a.privilege_type = 'SELECT'
                AND NOT a.is_grantable);
        IF grantees IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON rag.%I FROM %s', target, grantees);
        END IF;
        SELECT string_agg(CASE WHEN r.oid = 0 THEN 'PUBLIC' ELSE r.oid::regrole::text END, ', ')
        INTO grantees
        FROM unnest(readers) AS r (oid)
        WHERE r.oid <> (SELECT c.relowner FROM pg_class AS c WHERE c.oid = target_oid)
            AND NOT EXISTS (
                SELECT FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
                WHERE c.oid = target_oid AND a.grantee = r.oid AND a.privilege_type = 'SELECT'
            );
        IF grantees IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', target, grantees);
        END IF;
        -- pgask's admins and workers write chunks.
        IF NOT has_table_privilege('pgask_worker', target_oid, 'DELETE')
                OR NOT has_table_privilege('pgask_admin', target_oid, 'DELETE') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON rag.%I TO pgask_admin,'
                ' pgask_worker', target);
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION rag._sync_security(text) IS
'SECURITY DEFINER: the chunk tables, their grants and policies belong to pgask_owner';

-- rag._lock_out(pipeline): nobody but pgask_owner may read the pipeline's chunks: what a
-- failed rag._sync_security leaves, so that a failure never leaves a revoked role reading.
CREATE OR REPLACE FUNCTION rag._lock_out(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._lock_out');
    target regclass;
    grantees text;
BEGIN
    FOR target IN
        SELECT to_regclass(format('rag.%I', t)) FROM unnest(array_remove(ARRAY[
            rag._store(p.name, p.active_set), rag._store(p.name, p.building_set),
            p.name || '_chunks'], NULL)) AS t
    LOOP
        CONTINUE WHEN target IS NULL;
        SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            ELSE a.grantee::regrole::text END, ', ')
        INTO grantees
        FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = target AND a.grantee <> c.relowner;
        IF grantees IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON %s FROM %s', target, grantees);
        END IF;
    END LOOP;
    UPDATE rag.pipelines AS x SET acl_digest = NULL WHERE x.name = p.name;
END;
$$;
COMMENT ON FUNCTION rag._lock_out(text) IS
'SECURITY DEFINER: the chunk tables belong to pgask_owner';

-- rag._on_grant(): a GRANT or REVOKE reaches the chunks of the pipelines whose source it
-- changed, at once, in the same transaction: only those (the recorded digest tells them
-- apart, so a GRANT on anything else, or a REVOKE that changes nothing, does nothing and
-- locks nothing). A failure never fails the command: the pipeline's chunks are locked out
-- (readable by pgask_owner only) and the pipeline is marked broken with the reason.
-- SECURITY DEFINER: the chunk tables belong to pgask_owner.
CREATE OR REPLACE FUNCTION rag._on_grant()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pipeline_name text;
BEGIN
    FOR pipeline_name IN
        SELECT p.name FROM rag.pipelines AS p
        WHERE p.acl_digest IS DISTINCT FROM rag._source_acl_digest(p.source)
            AND EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source)
    LOOP
        BEGIN
            PERFORM rag._sync_security(pipeline_name);
        EXCEPTION WHEN others THEN
            BEGIN
                PERFORM rag._lock_out(pipeline_name);
                PERFORM rag._mark_broken(pipeline_name,
                    format('its chunks could not follow a change of the source''s privileges'
                        ' (%s); they are readable by pgask_owner only', sqlerrm));
            EXCEPTION WHEN others THEN
                RAISE WARNING 'pgask: pipeline %: %', pipeline_name, sqlerrm;
            END;
        END;
    END LOOP;
EXCEPTION WHEN others THEN
    RAISE WARNING 'pgask: the access rules of the chunks could not follow this command: %',
        sqlerrm;
END;
$$;
COMMENT ON FUNCTION rag._on_grant() IS
'SECURITY DEFINER: a GRANT or REVOKE on a source reaches chunk tables owned by pgask_owner';

-- (Through EXECUTE: there is no CREATE OR REPLACE EVENT TRIGGER.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_source_security;
    DROP EVENT TRIGGER IF EXISTS pgask_grants;
    EXECUTE 'CREATE EVENT TRIGGER pgask_grants ON ddl_command_end'
        ' WHEN TAG IN (''GRANT'', ''REVOKE'') EXECUTE FUNCTION rag._on_grant()';
END;
$$;
DROP FUNCTION IF EXISTS rag._on_source_ddl();
