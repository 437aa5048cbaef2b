-- Source DDL: pipelines follow what happens to their source tables. A renamed column is
-- renamed in the pipeline's SQL fragments (columns are remembered by attnum in
-- rag.pipelines.source_columns), a renamed or moved table needs nothing (sources are OIDs),
-- and a dropped table or used column, or content that is no longer text, marks the pipeline
-- broken: its triggers go (the user's writes always succeed), its queue waits, and
-- rag.pipeline_status shows why. rag.alter_pipeline repairs what it can; rag.drop_pipeline
-- always works. Logic of the renames: pgask/source_columns.py.

-- rag._rename_in_sql(fragment, old, new): an SQL fragment over the source row "s" with one
-- column renamed (string literals, functions and types untouched).
CREATE OR REPLACE FUNCTION rag._rename_in_sql(fragment text, old_name text, new_name text)
RETURNS text
LANGUAGE plpython3u
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
from pgask import source_columns
return source_columns.rename(fragment, old_name, new_name)
$$;
REVOKE ALL ON FUNCTION rag._rename_in_sql(text, text, text) FROM public;

-- rag._referenced_columns(source, fragments): {"attnum": "name"} of the source's columns
-- that the fragments use.
CREATE OR REPLACE FUNCTION rag._referenced_columns(source regclass, fragments text[])
RETURNS jsonb
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
import json
from pgask import source_columns
rows = plpy.execute(plpy.prepare(
    "SELECT attnum, attname::text AS name FROM pg_catalog.pg_attribute"
    " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped", ["text"]),
    [source])
attnums = {r["name"]: r["attnum"] for r in rows}
used = set()
for fragment in fragments or []:
    used |= source_columns.references(fragment or "", attnums)
return json.dumps({str(attnums[name]): name for name in sorted(used)})
$$;
REVOKE ALL ON FUNCTION rag._referenced_columns(regclass, text[]) FROM public;

-- rag._check_source(pipeline): brings the pipeline's SQL fragments in step with its source
-- table (renamed columns, the table's current name) and returns why it cannot run, or NULL.
CREATE OR REPLACE FUNCTION rag._check_source(pipeline text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    col record;
    reason text;
    content_type text;
    fragments text;
BEGIN
    SELECT * INTO p FROM rag.pipelines AS x WHERE x.name = pipeline FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = p.source) THEN
        RETURN format('source table %s was dropped', coalesce(p.source_name, 'OID ' || p.source::oid));
    END IF;
    FOR col IN
        SELECT c.key::smallint AS attnum, c.value AS old_name,
            CASE WHEN NOT a.attisdropped THEN a.attname::text END AS new_name
        FROM jsonb_each_text(p.source_columns) AS c
        LEFT JOIN pg_attribute AS a ON a.attrelid = p.source AND a.attnum = c.key::smallint
        ORDER BY 1
    LOOP
        IF col.new_name IS NULL THEN
            -- Dropped: it matters while a fragment still uses it (rag.alter_pipeline may
            -- have taken it out of the metadata since).
            fragments := concat_ws(E'\n', p.key_sql, p.key_join_sql, p.content_sql,
                p.title_sql, p.metadata_sql);
            IF rag._rename_in_sql(fragments, col.old_name, 'pgask probe') <> fragments THEN
                reason := concat_ws('; ', reason, format('column %I of %s was dropped',
                    col.old_name, p.source));
            END IF;
        ELSIF col.new_name <> col.old_name THEN
            p.key_sql := rag._rename_in_sql(p.key_sql, col.old_name, col.new_name);
            p.key_join_sql := rag._rename_in_sql(p.key_join_sql, col.old_name, col.new_name);
            p.content_sql := rag._rename_in_sql(p.content_sql, col.old_name, col.new_name);
            p.title_sql := rag._rename_in_sql(p.title_sql, col.old_name, col.new_name);
            p.metadata_sql := rag._rename_in_sql(p.metadata_sql, col.old_name, col.new_name);
        END IF;
    END LOOP;
    IF reason IS NULL THEN
        BEGIN
            content_type := rag._expression_type(p.source, p.content_sql);
            IF content_type NOT IN ('text', 'character varying', 'character') THEN
                reason := format('content %s of %s is %s now, not text', p.content_sql,
                    p.source, content_type);
            END IF;
            PERFORM rag._expression_type(p.source, p.title_sql);
            PERFORM rag._expression_type(p.source, p.metadata_sql);
        EXCEPTION WHEN others THEN
            reason := format('the pipeline''s SQL no longer fits %s: %s', p.source, sqlerrm);
        END;
    END IF;
    UPDATE rag.pipelines AS x SET
        key_sql = p.key_sql, key_join_sql = p.key_join_sql, content_sql = p.content_sql,
        title_sql = p.title_sql, metadata_sql = p.metadata_sql,
        source_name = p.source::text,
        source_columns = CASE WHEN reason IS NULL THEN rag._referenced_columns(p.source,
            ARRAY[p.key_sql, p.key_join_sql, p.content_sql, p.title_sql, p.metadata_sql])
            ELSE x.source_columns END
    WHERE x.name = p.name;
    RETURN reason;
END;
$$;
REVOKE ALL ON FUNCTION rag._check_source(text) FROM public;

-- rag._mark_broken(pipeline, reason): the pipeline stops capturing (its triggers go, so no
-- write to the source can fail because of it) and says why.
CREATE OR REPLACE FUNCTION rag._mark_broken(pipeline text, reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._mark_broken');
    suffix text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = p.source) THEN
        FOREACH suffix IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pgask_' || p.name || '_' || suffix,
                p.source);
        END LOOP;
    END IF;
    UPDATE rag.pipelines AS x SET broken = reason WHERE x.name = p.name;
END;
$$;
REVOKE ALL ON FUNCTION rag._mark_broken(text, text) FROM public;

-- rag._refresh_pipeline(pipeline): after DDL on its source or a change of its definition:
-- follows renames and reinstalls the capture, or marks it broken. A pipeline that was broken
-- and is whole again gets every row queued (writes were not captured meanwhile). Returns
-- the reason it is broken, or NULL.
CREATE OR REPLACE FUNCTION rag._refresh_pipeline(pipeline text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_broken boolean := (SELECT x.broken IS NOT NULL FROM rag.pipelines AS x
        WHERE x.name = pipeline);
    reason text := rag._check_source(pipeline);
    p rag.pipelines;
BEGIN
    IF reason IS NOT NULL THEN
        PERFORM rag._mark_broken(pipeline, reason);
        RETURN reason;
    END IF;
    UPDATE rag.pipelines AS x SET broken = NULL WHERE x.name = pipeline
    RETURNING * INTO p;
    PERFORM rag._install_capture(pipeline);
    IF was_broken THEN
        EXECUTE format('SELECT rag._enqueue(%L, array_agg(%s)) FROM %s AS s',
            p.name, p.key_sql, p.source);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION rag._refresh_pipeline(text) FROM public;

-- rag._on_source_change(): ALTER TABLE on a source (rename, set schema, drop or retype a
-- column, ...). SECURITY DEFINER: the table's owner runs the DDL, the pipeline belongs to
-- the owner of schema rag. A failure here is a WARNING, never a failed ALTER TABLE.
CREATE OR REPLACE FUNCTION rag._on_source_change()
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
        WHERE p.broken IS NULL
            AND p.source IN (SELECT c.objid FROM pg_event_trigger_ddl_commands() AS c)
    LOOP
        BEGIN
            PERFORM rag._refresh_pipeline(pipeline_name);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgask: pipeline % could not follow this change of its source: %',
                pipeline_name, sqlerrm;
        END;
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION rag._on_source_change() FROM public;
COMMENT ON FUNCTION rag._on_source_change() IS
'SECURITY DEFINER: the source table''s owner runs the DDL; the pipeline, its capture functions '
'and triggers belong to the owner of schema rag, who must rewrite them';

-- rag._on_source_drop(): a dropped source table (DROP TABLE, DROP SCHEMA ... CASCADE) or a
-- column dropped by a cascade marks its pipelines broken; the chunks stay until
-- rag.drop_pipeline.
CREATE OR REPLACE FUNCTION rag._on_source_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dropped record;
BEGIN
    FOR dropped IN
        SELECT p.name, d.object_type, d.object_identity
        FROM pg_event_trigger_dropped_objects() AS d
        INNER JOIN rag.pipelines AS p ON d.objid = p.source
        WHERE d.classid = 'pg_class'::regclass AND p.broken IS NULL
            AND d.object_type IN ('table', 'table column')
    LOOP
        BEGIN
            IF dropped.object_type = 'table' THEN
                UPDATE rag.pipelines AS x SET
                    broken = format('source table %s was dropped', dropped.object_identity),
                    source_name = dropped.object_identity
                WHERE x.name = dropped.name;
            ELSE
                PERFORM rag._refresh_pipeline(dropped.name);
            END IF;
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgask: pipeline % could not follow this drop: %', dropped.name,
                sqlerrm;
        END;
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION rag._on_source_drop() FROM public;
COMMENT ON FUNCTION rag._on_source_drop() IS
'SECURITY DEFINER: whoever drops a source table marks the pipeline broken, a row of '
'rag.pipelines only the owner of schema rag may update';

-- (Through EXECUTE: there is no CREATE OR REPLACE EVENT TRIGGER.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_source_change;
    EXECUTE 'CREATE EVENT TRIGGER pgask_source_change ON ddl_command_end'
        ' WHEN TAG IN (''ALTER TABLE'') EXECUTE FUNCTION rag._on_source_change()';
    DROP EVENT TRIGGER IF EXISTS pgask_source_drop;
    EXECUTE 'CREATE EVENT TRIGGER pgask_source_drop ON sql_drop'
        ' EXECUTE FUNCTION rag._on_source_drop()';
END;
$$;
