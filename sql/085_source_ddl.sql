-- Source DDL: pipelines follow what happens to their source tables, and never fail it.
-- (Over 400 lines: one event trigger per kind of DDL, and the check they all share.)
--   Followed: a renamed column (the pipeline's SQL is rewritten; columns are remembered by
--   number in rag.pipelines.source_columns, and the reader finds their names when it runs),
--   a renamed or moved table or schema (sources are OIDs), a retyped key column (the capture
--   and visibility functions are written again), a new partition (it gets the capture
--   triggers, as whoever created or attached it), row-level security switched on or off,
--   and grants (sql/060_security.sql).
--   Re-queued: a rewrite of the table (ALTER COLUMN ... TYPE ... USING: every row again), a
--   partition attached or detached, a new key (rows without chunks, chunks without rows).
--   Broken, with the reason in rag.pipeline_status.broken and `pgask doctor`: the table or a
--   column the pipeline uses dropped, a key type other roles cannot trust, a new owner (a
--   member of the new owner binds it again with rag.alter_pipeline), inheritance children,
--   the embedding column gone (DROP EXTENSION vector CASCADE), a reader or capture function
--   dropped. A broken pipeline's queue waits and its chunks stay; rag.alter_pipeline
--   repairs what it can, rag.drop_pipeline always works.
-- Every event trigger here checks first, cheaply, whether the command touched a source, and
-- catches every error of its own: it marks the pipeline broken and lets the command succeed.
-- Logic of the renames: pgask/source_columns.py.

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

-- rag._referenced_columns(source, fragments): {"attnum": "name"} of the source's columns
-- that the fragments use. (By OID: pgask_owner may have no USAGE on the source's schema.)
DROP FUNCTION IF EXISTS rag._referenced_columns(regclass, text[]);
CREATE OR REPLACE FUNCTION rag._referenced_columns(source oid, fragments text[])
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
    " WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped", ["oid"]),
    [source])
attnums = {r["name"]: r["attnum"] for r in rows}
used = set()
for fragment in fragments or[]:
    used |= source_columns.references(fragment or "", attnums)
return json.dumps({str(attnums[name]): name for name in sorted(used)})
$$;

-- rag._source_shape(source, columns): what the pipeline's rows depend on besides their
-- values, as JSON: the partitions and the primary key's columns and types ("tree"), and the
-- type of each column the pipeline uses (`columns`: rag.pipelines.source_columns), whose
-- text may change without a rewrite (timestamp to timestamptz, say).
DROP FUNCTION IF EXISTS rag._source_shape(oid);
CREATE OR REPLACE FUNCTION rag._source_shape(source oid, columns jsonb)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'tree', md5(concat_ws(E'\x1f',
            (SELECT string_agg(t.relid::text, ',' ORDER BY t.relid)
                FROM rag._partition_tree(source) AS t (relid)),
            (SELECT string_agg(a.attnum || ':' || a.atttypid, ',' ORDER BY k.n)
                FROM pg_index AS i
                CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                INNER JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = source AND i.indisprimary))),
        'columns', (SELECT coalesce(jsonb_object_agg(a.attnum, a.atttypid || ':' || a.atttypmod),
                '{}')
            FROM pg_attribute AS a
            WHERE a.attrelid = source AND NOT a.attisdropped
                AND a.attnum::text IN (SELECT jsonb_object_keys(columns))))::text
$$;

-- rag._shape_changed(old, new): whether rows may read differently from a shape recorded by
-- rag._source_shape to another: partitions or key changed, or a column used in both was
-- retyped (a column the pipeline starts or stops using is rag.alter_pipeline's to handle).
CREATE OR REPLACE FUNCTION rag._shape_changed(old_shape text, new_shape text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old jsonb;
    new jsonb := new_shape::jsonb;
BEGIN
    BEGIN
        old := old_shape::jsonb;
    EXCEPTION WHEN others THEN
        RETURN true;  -- recorded by an older pgask, or never
    END;
    RETURN old IS NULL OR jsonb_typeof(old) <> 'object'
        OR (old ->> 'tree') IS DISTINCT FROM (new ->> 'tree')
        OR EXISTS (SELECT FROM jsonb_each_text(old -> 'columns') AS o
            WHERE (new -> 'columns') ? o.key AND (new -> 'columns' ->> o.key) <> o.value);
END;
$$;

-- rag._names_catalog_objects(type): whether values of the type name catalog objects: a
-- reg* type (regclass, regtype, ...), or a domain or array over one, at any depth.
CREATE OR REPLACE FUNCTION rag._names_catalog_objects(type_oid oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE chain (oid) AS (
        SELECT type_oid
        UNION
        SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
        FROM chain AS c INNER JOIN pg_type AS t ON t.oid = c.oid
        WHERE t.typtype = 'd'
            OR (t.typelem <> 0 AND t.typsubscript = 'pg_catalog.array_subscript_handler'::regproc)
    )
    SELECT EXISTS (
        SELECT FROM chain AS c INNER JOIN pg_type AS t ON t.oid = c.oid
        WHERE t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = ANY(ARRAY[
            'regclass', 'regproc', 'regprocedure', 'regoper', 'regoperator', 'regtype',
            'regrole', 'regnamespace', 'regconfig', 'regdictionary', 'regcollation'])
    )
$$;

-- rag._shape_problem(source): why pgask cannot follow this table, or NULL: it must be a
-- table or a partitioned table, not a partition itself (writes through its parent would
-- not fire its triggers), without inheritance (a parent's key does not cover its
-- children's rows), with a primary key of no reg* type (regclass, regtype, ...: their text
-- follows the catalog, so a renamed table would change every key without a write, and a key
-- of a dropped object would not even read), logged (crash recovery empties an unlogged
-- table without firing anything).
CREATE OR REPLACE FUNCTION rag._shape_problem(source oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN c.oid IS NULL THEN 'the table does not exist'
        WHEN c.relkind NOT IN ('r', 'p') THEN format('%s is not a table (relkind %s)',
            source::regclass, c.relkind)
        WHEN c.relispartition THEN format('%s is a partition of %s: create the pipeline on '
            'the partitioned table', source::regclass, pg_partition_root(source))
        WHEN EXISTS (SELECT FROM pg_inherits AS i WHERE i.inhparent = source)
            AND c.relkind = 'r' THEN format('%s has inheritance children, whose rows its '
            'primary key does not cover; use declarative partitioning', source::regclass)
        WHEN EXISTS (SELECT FROM pg_inherits AS i WHERE i.inhrelid = source)
            THEN format('%s inherits from another table', source::regclass)
        WHEN NOT EXISTS (SELECT FROM pg_index AS i WHERE i.indrelid = source AND i.indisprimary)
            THEN format('table %s has no primary key; chunks are tied to their row by it',
            source::regclass)
        WHEN EXISTS (SELECT FROM rag._key_columns(source, (SELECT array_agg(k.attnum::smallint
                ORDER BY k.n) FROM pg_index AS i
                CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                WHERE i.indrelid = source AND i.indisprimary)) AS k
                WHERE rag._names_catalog_objects(k.type_oid))
            THEN format('the primary key of %s is of a reg* type (regclass, regtype, ...), '
            'whose text follows the catalog: a renamed or dropped object would change or lose '
            'its rows'' keys without a write; use the oid or the name as the key',
            source::regclass)
        WHEN EXISTS (SELECT FROM rag._partition_tree(source) AS t (relid)
                INNER JOIN pg_class AS u ON u.oid = t.relid AND u.relpersistence = 'u')
            THEN format('%s is unlogged (or has an unlogged partition): crash recovery empties '
            'it without a write pgask could see; ALTER TABLE ... SET LOGGED', source::regclass)
    END
    FROM (SELECT source AS oid) AS s
    LEFT JOIN pg_class AS c ON c.oid = s.oid
$$;

-- rag._check_source(pipeline): brings the pipeline's SQL fragments and key in step with its
-- source table (renamed columns, a new key) and returns why it cannot run, or NULL. Reads
-- only the catalog: nothing of the table's is evaluated.
CREATE OR REPLACE FUNCTION rag._check_source(pipeline text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines;
    col record;
    reason text;
    fragments text;
    key_attnums smallint[];
BEGIN
    -- No row lock: a DDL on the source must not wait for a transaction that changes the
    -- pipeline (the UPDATE below locks the row only when something changed).
    SELECT * INTO p FROM rag.pipelines AS x WHERE x.name = pipeline;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = p.source) THEN
        RETURN format('source table %s was dropped', coalesce(p.source_name, 'OID ' || p.source::oid));
    END IF;
    reason := rag._shape_problem(p.source);
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
            fragments := concat_ws(E'\n', p.content_sql, p.title_sql, p.metadata_sql);
            IF rag._rename_in_sql(fragments, col.old_name, 'pgask probe') <> fragments THEN
                reason := concat_ws('; ', reason, format('column %I of %s was dropped',
                    col.old_name, p.source));
            END IF;
        ELSIF col.new_name <> col.old_name THEN
            p.content_sql := rag._rename_in_sql(p.content_sql, col.old_name, col.new_name);
            p.title_sql := rag._rename_in_sql(p.title_sql, col.old_name, col.new_name);
            p.metadata_sql := rag._rename_in_sql(p.metadata_sql, col.old_name, col.new_name);
        END IF;
    END LOOP;
    -- Row-level security forced on the table applies to its owner, as whom the reader
    -- reads: rows its policies hide would look deleted.
    IF EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source AND c.relforcerowsecurity) THEN
        reason := concat_ws('; ', reason, format('row-level security is forced on %s, so its '
            'owner, as whom pgask reads the rows, may not see all of them: ALTER TABLE %s NO '
            'FORCE ROW LEVEL SECURITY (its readers stay subject to the policies)', p.source,
            p.source));
    END IF;
    -- Content that is one column must still be text (an expression is checked where it
    -- runs, by the reader).
    IF reason IS NULL AND p.content_sql ~ '^s\.("([^"]|"")+"|[a-z_][a-z0-9_$]*)$' THEN
        SELECT concat_ws('; ', reason, format('content column %I of %s is %s now, not text',
            a.attname, p.source, format_type(a.atttypid, a.atttypmod)))
        INTO reason
        FROM pg_attribute AS a INNER JOIN pg_type AS t ON t.oid = a.atttypid
        WHERE a.attrelid = p.source AND NOT a.attisdropped AND t.typcategory <> 'S'
            AND quote_ident(a.attname) = substr(p.content_sql, 3);
    END IF;
    -- The key, as the primary key is now (a new key means new document ids: rows are checked
    -- again by rag._refresh_pipeline through the shape digest).
    SELECT array_agg(k.attnum::smallint ORDER BY k.n) INTO key_attnums
    FROM pg_index AS i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
    WHERE i.indrelid = p.source AND i.indisprimary;
    IF key_attnums IS NOT NULL THEN
        p.key_attnums := key_attnums;
        IF EXISTS (SELECT FROM rag._key_columns(p.source, key_attnums) AS k WHERE NOT k.trusted)
        THEN
            reason := concat_ws('; ', reason, format('the primary key of %s has a type that '
                'roles other than a superuser control (%s): other roles would run its code '
                'when they search', p.source, (SELECT string_agg(format_type(k.type_oid, NULL),
                ', ') FROM rag._key_columns(p.source, key_attnums) AS k WHERE NOT k.trusted)));
        END IF;
    END IF;
    IF EXISTS (
        SELECT FROM unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (n)
        WHERE NOT EXISTS (SELECT FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass(format('rag.%I', rag._store(p.name, s.n)))
                AND a.attname = 'embedding' AND NOT a.attisdropped)
    ) THEN
        reason := concat_ws('; ', reason, 'its chunk table has no embedding column (was the '
            'vector extension dropped?): run `pgask install`');
    END IF;
    -- Every table whose writes the pipeline captures has its four triggers, enabled
    -- (pgask doctor says when one does not fire ALWAYS: under session_replication_role =
    -- replica, as logical replication applies changes, it would not fire).
    IF reason IS NULL AND p.reader IS NOT NULL THEN
        SELECT concat_ws('; ', reason, format('the capture trigger%s %s %s missing or '
            'disabled, so writes go unrecorded: a member of the owner of %s runs SELECT '
            'rag.alter_pipeline(%L) to put them back', CASE WHEN count(*) > 1 THEN 's' END,
            string_agg(m.what, ', ' ORDER BY m.what), CASE WHEN count(*) > 1 THEN 'are'
            ELSE 'is' END, p.source, p.name))
        INTO reason
        FROM (
            SELECT format('%I on %s', 'pgask_' || p.name || '_' || e.event, t.target) AS what
            FROM rag._capture_targets(p.name) AS t (target)
            CROSS JOIN unnest(ARRAY['insert', 'update', 'delete', 'truncate']) AS e (event)
            WHERE NOT EXISTS (
                SELECT FROM pg_trigger AS g
                WHERE g.tgrelid = t.target AND g.tgname = 'pgask_' || p.name || '_' || e.event
                    AND g.tgenabled IN ('A', 'O')  -- (ORIGIN: rag._attach_capture makes it A)
                    AND g.tgfoid = to_regprocedure(format('rag.%I()',
                        'pgask_' || p.name || '_capture')))
        ) AS m
        HAVING count(*) > 0;
    END IF;
    IF p.reader IS NOT NULL AND rag._reader_problem(p.name) IS NOT NULL THEN
        reason := concat_ws('; ', reason, format('%s: a member of the owner of %s runs SELECT '
            'rag.alter_pipeline(%L) to bind it again', rag._reader_problem(p.name), p.source,
            p.name));
    END IF;
    UPDATE rag.pipelines AS x SET
        content_sql = p.content_sql, title_sql = p.title_sql, metadata_sql = p.metadata_sql,
        key_attnums = p.key_attnums,
        key_sql = coalesce(rag._key_text_sql(p.source, p.key_attnums), x.key_sql),
        key_join_sql = coalesce(rag._key_match_sql(p.source, p.key_attnums, 'k.document_id'),
            x.key_join_sql),
        source_name = p.source::text,
        source_columns = CASE WHEN reason IS NULL THEN rag._referenced_columns(p.source,
            ARRAY[p.content_sql, p.title_sql, p.metadata_sql])
            ELSE x.source_columns END
    WHERE x.name = p.name AND (x.content_sql, x.title_sql, x.metadata_sql, x.key_attnums,
            x.key_sql, x.key_join_sql, x.source_name, x.source_columns)
        IS DISTINCT FROM (p.content_sql, p.title_sql, p.metadata_sql, p.key_attnums,
            coalesce(rag._key_text_sql(p.source, p.key_attnums), x.key_sql),
            coalesce(rag._key_match_sql(p.source, p.key_attnums, 'k.document_id'),
                x.key_join_sql),
            p.source::text,
            CASE WHEN reason IS NULL THEN rag._referenced_columns(p.source,
                ARRAY[p.content_sql, p.title_sql, p.metadata_sql])
                ELSE x.source_columns END);
    RETURN reason;
END;
$$;

-- rag._mark_broken(pipeline, reason): the pipeline says why it cannot run; its queue waits
-- (writes are still recorded: the capture never fails them) and its chunks stay.
CREATE OR REPLACE FUNCTION rag._mark_broken(pipeline text, reason text)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE rag.pipelines AS x SET broken = reason
    WHERE x.name = pipeline AND x.broken IS DISTINCT FROM reason
$$;
COMMENT ON FUNCTION rag._mark_broken(text, text) IS
'SECURITY DEFINER: rag.pipelines belongs to pgask_owner; whoever drops a source marks it';

-- rag._mark_unreadable(pipeline): the worker found that the pipeline's reader cannot read
-- its rows (rag._source_rows failed with an error that concerns every row): it is marked
-- broken with that error, if a call of its reader fails so now; returns the reason, or NULL
-- when the reader runs (the failure was one batch's). Workers may not mark a pipeline broken
-- with a reason of their own (rag._mark_broken is pgask_owner's). SECURITY DEFINER:
-- rag.pipelines belongs to pgask_owner.
CREATE OR REPLACE FUNCTION rag._mark_unreadable(pipeline text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    state text;
    message text;
BEGIN
    BEGIN
        PERFORM FROM rag._source_rows(pipeline, 'rows', '{}'::text[]);
        RETURN NULL;
    EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    END;
    -- (As the worker tells a whole pipeline's failure from one row's: pgask.queue.)
    IF left(state, 2) NOT IN ('42', '0A', '55') THEN
        RETURN NULL;
    END IF;
    PERFORM rag._mark_broken(pipeline, 'its rows cannot be read: ' || message);
    RETURN message;
END;
$$;
COMMENT ON FUNCTION rag._mark_unreadable(text) IS
'SECURITY DEFINER: rag.pipelines belongs to pgask_owner; marks only what its reader shows';

-- rag._refresh_pipeline(pipeline): after DDL on its source or a change of its definition:
-- follows renames and the key, rewrites the capture and visibility functions and the access
-- rules, or marks it broken. A pipeline that was broken and is whole again, or whose
-- partitions or key changed, gets its rows checked again. Returns the reason it is broken,
-- or NULL. SECURITY DEFINER: pgask_owner owns what it rewrites.
CREATE OR REPLACE FUNCTION rag._refresh_pipeline(pipeline text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
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
        -- Access to the chunks still follows the source (a new owner, new grants).
        IF EXISTS (SELECT FROM rag.pipelines AS x INNER JOIN pg_class AS c ON c.oid = x.source
                WHERE x.name = pipeline) THEN
            PERFORM rag._install_visibility(pipeline);
            PERFORM rag._sync_security(pipeline);
        END IF;
        RETURN reason;
    END IF;
    UPDATE rag.pipelines AS x SET broken = NULL WHERE x.name = pipeline AND x.broken IS NOT NULL;
    SELECT * INTO p FROM rag.pipelines AS x WHERE x.name = pipeline;
    PERFORM rag._install_capture(pipeline);
    PERFORM rag._install_visibility(pipeline);
    PERFORM rag._sync_security(pipeline);
    -- Whole again, or rows that may read differently now (partitions attached or detached,
    -- another key, a used column retyped without a rewrite): every row is checked again
    -- (rows whose chunks would not change cost chunking, not embedding).
    IF was_broken OR rag._shape_changed(p.shape_digest, rag._source_shape(p.source, p.source_columns))
    THEN
        PERFORM rag._request_check(pipeline, 'all');
    END IF;
    UPDATE rag.pipelines AS x SET shape_digest = rag._source_shape(p.source, p.source_columns)
    WHERE x.name = pipeline
        AND x.shape_digest IS DISTINCT FROM rag._source_shape(p.source, p.source_columns);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION rag._refresh_pipeline(text) IS
'SECURITY DEFINER: the pipeline''s functions, chunk tables and rows belong to pgask_owner';

-- rag._follow(pipeline): rag._refresh_pipeline for an event trigger: never raises; an error
-- marks the pipeline broken with it.
CREATE OR REPLACE FUNCTION rag._follow(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._refresh_pipeline(pipeline);
EXCEPTION WHEN others THEN
    BEGIN
        PERFORM rag._mark_broken(pipeline,
            format('pgask could not follow a change of its source table: %s', sqlerrm));
    EXCEPTION WHEN others THEN
        RAISE WARNING 'pgask: pipeline % could not follow this change of its source: %',
            pipeline, sqlerrm;
    END;
END;
$$;

-- rag._pipelines_touched(objects): the pipelines whose source is, contains (a partition of
-- it), is a child of, or uses (a column type, or a domain over one) one of the objects.
CREATE OR REPLACE FUNCTION rag._pipelines_touched(objects oid[])
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.name FROM rag.pipelines AS p
    WHERE p.source = ANY(objects)
        OR EXISTS (
            SELECT FROM unnest(objects) AS o (oid)
            WHERE pg_partition_root(o.oid) = p.source
                OR EXISTS (SELECT FROM pg_inherits AS i WHERE i.inhrelid = o.oid
                    AND i.inhparent = p.source)
                -- the source attached as a partition of another table, or given a parent
                OR EXISTS (SELECT FROM pg_inherits AS i WHERE i.inhrelid = p.source
                    AND i.inhparent = o.oid)
        )
        OR EXISTS (
            SELECT FROM pg_attribute AS a
            LEFT JOIN pg_type AS t ON t.oid = a.atttypid
            WHERE a.attrelid = p.source AND a.attnum > 0
                AND (a.atttypid = ANY(objects) OR t.typbasetype = ANY(objects)
                    OR t.typelem = ANY(objects))
        )
$$;

-- rag._on_ddl(): ddl_command_end of ALTER TABLE, CREATE TABLE (a new partition or child),
-- ALTER TYPE, ALTER DOMAIN and ALTER SCHEMA: the pipelines whose source the command
-- touched follow it (rag._follow). SECURITY DEFINER: the role running the DDL (a source
-- table's owner) may not change pgask's objects, which belong to pgask_owner.
CREATE OR REPLACE FUNCTION rag._on_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pipeline_name text;
BEGIN
    FOR pipeline_name IN
        SELECT DISTINCT t.name FROM rag._pipelines_touched(ARRAY(
            SELECT c.objid FROM pg_event_trigger_ddl_commands() AS c WHERE c.objid IS NOT NULL
            UNION
            SELECT c.oid FROM pg_class AS c
            WHERE c.relnamespace IN (SELECT d.objid FROM pg_event_trigger_ddl_commands() AS d
                WHERE d.object_type = 'schema')
        )) AS t (name)
        -- A broken pipeline may be repaired by a command that does not name its source
        -- (DETACH PARTITION names the parent): each DDL looks at every broken one again.
        UNION
        SELECT p.name FROM rag.pipelines AS p
        WHERE p.broken IS NOT NULL AND EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source)
    LOOP
        PERFORM rag._follow(pipeline_name);
        -- A type's values may read differently now (ALTER TYPE ... RENAME VALUE), with no
        -- rewrite and no write: every row again.
        IF tg_tag IN ('ALTER TYPE', 'ALTER DOMAIN') THEN
            PERFORM rag._request_check(pipeline_name, 'all');
        END IF;
    END LOOP;
EXCEPTION WHEN others THEN
    RAISE WARNING 'pgask: pipelines could not follow this command: %', sqlerrm;
END;
$$;
COMMENT ON FUNCTION rag._on_ddl() IS
'SECURITY DEFINER: the source table''s owner runs the DDL; the pipeline, its functions and '
'chunk tables belong to pgask_owner, who must rewrite them';

-- rag._on_ddl_as_runner(): ddl_command_end of CREATE TABLE and ALTER TABLE: a partition
-- created in or attached to a partitioned source gets the capture triggers, created as the
-- role that ran the command (it owns the partition; pgask_owner may not create triggers on
-- other roles' tables). SECURITY INVOKER on purpose: it does only what that role may do
-- itself. Never fails the command.
CREATE OR REPLACE FUNCTION rag._on_ddl_as_runner()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pipeline_name text;
BEGIN
    FOR pipeline_name IN
        SELECT DISTINCT p.name FROM rag.pipelines AS p
        INNER JOIN pg_class AS s ON s.oid = p.source AND s.relkind = 'p'
        WHERE EXISTS (
            SELECT FROM pg_event_trigger_ddl_commands() AS c
            WHERE c.objid = p.source OR pg_partition_root(c.objid) = p.source
        )
    LOOP
        BEGIN
            PERFORM rag._attach_capture(pipeline_name, reenable => false);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgask: pipeline %: the new partition''s writes are not captured (%);'
                ' a member of the owner of the partitioned table runs SELECT'
                ' rag.alter_pipeline(%)', pipeline_name, sqlerrm, quote_literal(pipeline_name);
        END;
    END LOOP;
EXCEPTION WHEN others THEN
    RAISE WARNING 'pgask: partitions could not be followed: %', sqlerrm;
END;
$$;

-- rag._on_drop(): sql_drop: a dropped source table (DROP TABLE, DROP SCHEMA ... CASCADE)
-- marks its pipelines broken; a dropped column or partition of a source is followed; a
-- dropped piece of a pipeline (its reader, capture or visibility function, a chunk table's
-- embedding column: DROP EXTENSION vector CASCADE) marks it broken with the repair.
-- SECURITY DEFINER: rag.pipelines belongs to pgask_owner.
CREATE OR REPLACE FUNCTION rag._on_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dropped record;
BEGIN
    FOR dropped IN
        SELECT DISTINCT p.name, d.object_type, d.object_identity,
            d.objid = p.source AND d.object_type = 'table' AS source_gone
        FROM pg_event_trigger_dropped_objects() AS d
        INNER JOIN rag.pipelines AS p ON (d.objid = p.source
                AND d.classid = 'pg_class'::regclass AND d.object_type IN ('table', 'table column'))
            -- a capture trigger: DROP TRIGGER, or a dropped partition, which takes its
            -- triggers along
            OR (d.object_type = 'trigger' AND d.address_names[cardinality(d.address_names)]
                IN (SELECT 'pgask_' || p.name || '_' || e
                    FROM unnest(ARRAY['insert', 'update', 'delete', 'truncate']) AS e))
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source)
            OR p.broken IS NULL
    LOOP
        BEGIN
            IF dropped.source_gone THEN
                UPDATE rag.pipelines AS x SET
                    broken = format('source table %s was dropped', dropped.object_identity),
                    source_name = dropped.object_identity
                WHERE x.name = dropped.name;
            ELSE
                -- Also a broken pipeline: the drop may be its repair. A partition dropped
                -- from a partitioned source changes its shape: every row is checked again.
                PERFORM rag._follow(dropped.name);
            END IF;
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgask: pipeline % could not follow this drop: %', dropped.name,
                sqlerrm;
        END;
    END LOOP;
    -- Pieces of pipelines.
    FOR dropped IN
        SELECT p.name, d.object_identity
        FROM pg_event_trigger_dropped_objects() AS d
        INNER JOIN rag.pipelines AS p ON p.broken IS NULL AND (
            (d.object_type = 'table column' AND d.object_identity IN (
                SELECT format('rag.%I.embedding', rag._store(p.name, s.n))
                FROM unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (n)))
            OR (d.object_type = 'function' AND (d.objid = p.reader
                OR d.object_identity IN (format('rag.%I()', 'pgask_' || p.name || '_capture'),
                    format('rag.%I(text)', 'pgask_' || p.name || '_visible')))))
    LOOP
        PERFORM rag._mark_broken(dropped.name, format('%s was dropped: run `pgask install` '
            '(then rag.alter_pipeline(%L) as a member of the source''s owner if pgask doctor '
            'still lists it)', dropped.object_identity, dropped.name));
    END LOOP;
EXCEPTION WHEN others THEN
    RAISE WARNING 'pgask: pipelines could not follow this drop: %', sqlerrm;
END;
$$;
COMMENT ON FUNCTION rag._on_drop() IS
'SECURITY DEFINER: whoever drops a source table marks the pipeline broken, a row of '
'rag.pipelines only pgask_owner may update';

-- rag._on_rewrite(): table_rewrite of a source or one of its partitions (ALTER COLUMN ...
-- TYPE, with or without USING, that rewrites the rows): every row is checked again, so
-- chunks follow the rewritten content. SECURITY DEFINER: rag.inbox belongs to pgask_owner.
CREATE OR REPLACE FUNCTION rag._on_rewrite()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._request_check(t.name, 'all')
    FROM rag._pipelines_touched(ARRAY[pg_event_trigger_table_rewrite_oid()]) AS t (name);
EXCEPTION WHEN others THEN
    RAISE WARNING 'pgask: pipelines could not follow this rewrite: %', sqlerrm;
END;
$$;
COMMENT ON FUNCTION rag._on_rewrite() IS
'SECURITY DEFINER: the table''s owner rewrites it; rag.inbox belongs to pgask_owner';

-- (A source's new owner is not followed by binding again on anyone's behalf: the pipeline
-- is broken, rag._check_source saying why, until a member of the new owner's role runs
-- rag.alter_pipeline. A superuser changing the owner would otherwise run, as the new owner,
-- SQL that someone else wrote.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_owner_change;
    DROP FUNCTION IF EXISTS rag._on_owner_change();
END;
$$;

-- (Through EXECUTE: there is no CREATE OR REPLACE EVENT TRIGGER.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_source_change;
    DROP EVENT TRIGGER IF EXISTS pgask_ddl;
    EXECUTE 'CREATE EVENT TRIGGER pgask_ddl ON ddl_command_end'
        ' WHEN TAG IN (''ALTER TABLE'', ''CREATE TABLE'', ''ALTER TYPE'', ''ALTER DOMAIN'','
        ' ''ALTER SCHEMA'') EXECUTE FUNCTION rag._on_ddl()';
    -- Event triggers fire in the order of their names: a new partition gets its capture
    -- triggers (pgask_capture_partitions) before the pipeline is checked (pgask_ddl).
    DROP EVENT TRIGGER IF EXISTS pgask_ddl_runner;
    DROP EVENT TRIGGER IF EXISTS pgask_capture_partitions;
    EXECUTE 'CREATE EVENT TRIGGER pgask_capture_partitions ON ddl_command_end'
        ' WHEN TAG IN (''ALTER TABLE'', ''CREATE TABLE'') EXECUTE FUNCTION rag._on_ddl_as_runner()';
    DROP EVENT TRIGGER IF EXISTS pgask_source_drop;
    EXECUTE 'CREATE EVENT TRIGGER pgask_source_drop ON sql_drop'
        ' EXECUTE FUNCTION rag._on_drop()';
    DROP EVENT TRIGGER IF EXISTS pgask_rewrite;
    EXECUTE 'CREATE EVENT TRIGGER pgask_rewrite ON table_rewrite'
        ' EXECUTE FUNCTION rag._on_rewrite()';
END;
$$;
DROP FUNCTION IF EXISTS rag._on_source_change();
