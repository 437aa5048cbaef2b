-- Access rules: chunks follow their source table's grants and row-level security.

-- rag._sync_security(pipeline): chunks are copies of the source's rows, so they get exactly
-- the source's access rules, both ways. A role may SELECT a pipeline's chunk tables and view
-- when it may read what the chunks are built from: SELECT on the source table, or SELECT on
-- every column that the key, content, title and metadata use (column privileges); the
-- source's owner may; PUBLIC when PUBLIC may. Every other grant on them is revoked. When the
-- source has row-level security enabled, a policy shows a chunk only to a role that can see
-- its source row: the check runs the source's own policies (forced or not, as they are now),
-- as the reader; the installer, who runs the queue, owns the chunk tables and is exempt. Run
-- by every install and pipeline change, and by the event trigger below when a source table's
-- GRANT, REVOKE or ALTER TABLE (row-level security, owner) could change the answer.
CREATE OR REPLACE FUNCTION rag._sync_security(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- DROP ... IF EXISTS of what may not exist yet is routine here, not news
SET client_min_messages = warning
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._sync_security');
    has_rls boolean;
    source_owner oid;
    fragments text := concat_ws(' ', p.key_sql, p.content_sql, p.title_sql, p.metadata_sql);
    needed smallint[];
    readers oid[];
    target text;
    target_oid oid;
    grantees text;
    policy text;
BEGIN
    SELECT c.relrowsecurity, c.relowner INTO has_rls, source_owner
    FROM pg_class AS c WHERE c.oid = p.source;
    IF has_rls IS NULL THEN
        RETURN;  -- a broken pipeline whose source table was dropped (085_source_ddl.sql)
    END IF;
    -- Our own GRANTs and ALTERs must not re-enter through the event trigger.
    PERFORM set_config('pgask.syncing_security', 'on', true);
    -- Every column whose name occurs in the fragments as a word: a superset of the columns
    -- the chunks are built from (an expression may name a column in a string; never fewer).
    SELECT coalesce(array_agg(a.attnum), '{}') INTO needed
    FROM pg_attribute AS a
    WHERE a.attrelid = p.source AND a.attnum > 0 AND NOT a.attisdropped
        AND fragments ~* ('(^|[^[:alnum:]_$])'
            || regexp_replace(a.attname, '([^[:alnum:]_])', '\\\1', 'g') || '($|[^[:alnum:]_$])');
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
    WHERE g.name IS NOT NULL AND (
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
            policy := 'true';
            IF has_rls THEN
                policy := format('EXISTS (SELECT 1 FROM %s AS s WHERE %s)', p.source,
                    replace(p.key_join_sql, 'k.document_id', format('%I.document_id', target)));
            END IF;
            EXECUTE format('ALTER TABLE rag.%I ENABLE ROW LEVEL SECURITY', target);
            EXECUTE format('DROP POLICY IF EXISTS source_rows ON rag.%I', target);
            EXECUTE format('CREATE POLICY source_rows ON rag.%I FOR SELECT USING (%s)',
                target, policy);
        END IF;
        SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
            ELSE a.grantee::regrole::text END, ', ')
        INTO grantees
        FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE c.oid = target_oid AND a.grantee <> c.relowner;
        IF grantees IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON rag.%I FROM %s', target, grantees);
        END IF;
        SELECT string_agg(CASE WHEN r.oid = 0 THEN 'PUBLIC' ELSE r.oid::regrole::text END, ', ')
        INTO grantees
        FROM unnest(readers) AS r (oid)
        WHERE r.oid <> (SELECT c.relowner FROM pg_class AS c WHERE c.oid = target_oid);
        IF grantees IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', target, grantees);
        END IF;
    END LOOP;
    PERFORM set_config('pgask.syncing_security', '', true);
END;
$$;

-- rag._on_source_ddl(): enabling or disabling row-level security on a source table, or
-- changing grants or its owner, reaches the chunks at once. SECURITY DEFINER: the role running
-- the DDL (a source table's owner) may not alter the chunk tables, which the installer owns.
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

COMMENT ON FUNCTION rag._on_source_ddl() IS
'SECURITY DEFINER: a source owner''s GRANT, REVOKE, ALTER TABLE re-syncs chunk tables';
