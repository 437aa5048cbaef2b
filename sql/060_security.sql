-- Access rules: chunks follow their source table's grants and row-level security.

-- rag._sync_security(pipeline): chunks are copies of the source's rows, so they get the
-- source's access rules. Roles with SELECT on the source table get SELECT on its chunk
-- tables and view (and nobody else does); when the source has row-level security enabled, a
-- policy shows a chunk only to a role that can see its source row: the check runs the
-- source's own policies, as the reader. The owner, who runs the queue, is exempt, as owners
-- are from their tables' policies. Run by every install and pipeline change, and by the event
-- trigger below when a source table's ALTER TABLE (ENABLE ROW LEVEL SECURITY), GRANT or
-- REVOKE could change the answer.
CREATE OR REPLACE FUNCTION rag._sync_security(pipeline text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._sync_security');
    has_rls boolean := (SELECT relrowsecurity FROM pg_class WHERE oid = p.source);
    store_name text;
    readers text;
    policy text;
BEGIN
    -- Our own GRANTs and ALTERs must not re-enter through the event trigger.
    PERFORM set_config('pgask.syncing_security', 'on', true);
    SELECT string_agg(
        CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, ', '
    )
    INTO readers
    FROM pg_class AS c
    CROSS JOIN LATERAL aclexplode(c.relacl) AS a
    LEFT JOIN pg_roles AS r ON a.grantee = r.oid
    WHERE c.oid = p.source AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner;
    FOREACH store_name IN ARRAY array_remove(ARRAY[
        rag._store(p.name, p.active_set), rag._store(p.name, p.building_set)
    ], NULL) LOOP
        policy := 'true';
        IF has_rls THEN
            policy := format('EXISTS (SELECT 1 FROM %s AS s WHERE %s)', p.source,
                replace(p.key_join_sql, 'k.document_id', format('%I.document_id', store_name)));
        END IF;
        EXECUTE format('ALTER TABLE rag.%I ENABLE ROW LEVEL SECURITY', store_name);
        EXECUTE format('DROP POLICY IF EXISTS source_rows ON rag.%I', store_name);
        EXECUTE format('CREATE POLICY source_rows ON rag.%I FOR SELECT USING (%s)',
            store_name, policy);
        EXECUTE format('REVOKE ALL ON rag.%I FROM PUBLIC', store_name);
        IF readers IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', store_name, readers);
        END IF;
    END LOOP;
    IF to_regclass(format('rag.%I', p.name || '_chunks')) IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON rag.%I FROM PUBLIC', p.name || '_chunks');
        IF readers IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON rag.%I TO %s', p.name || '_chunks', readers);
        END IF;
    END IF;
    PERFORM set_config('pgask.syncing_security', '', true);
END;
$$;

-- rag._on_source_ddl(): enabling or disabling row-level security on a source table, or
-- changing grants, reaches the chunks at once.
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
