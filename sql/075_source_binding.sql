-- Source binding: a pipeline's SQL (content, title, metadata, the key) is evaluated over its
-- source's rows only as the source table's owner, inside a SECURITY DEFINER function that
-- owner owns and cannot change: the reader (docs/security.md, "Who runs what").
-- (Over 400 lines: the reader, its template and every check around it form one boundary,
-- read best in one place.)
--
-- Why it holds. Whatever a table owner controls (her types, casts, domains, operators,
-- policies, functions) can run when her rows are read, converted, or even parsed (a literal
-- cast to her domain runs its CHECK). pgask's side never does any of that: it calls the
-- reader, which runs as her, and gets back only text (the key, the content, the title, the
-- metadata as JSON text). Inside a SECURITY DEFINER function, PostgreSQL refuses SET ROLE,
-- RESET ROLE and SET SESSION AUTHORIZATION, also in anything it calls, so her code cannot
-- become anyone else there (the SQL form of PostgreSQL's own "security-restricted
-- operation", CVE-2022-1552). What her code changes in the session (settings, temporary
-- objects) is undone: every call runs in a subtransaction that is rolled back once the
-- reader's rows are copied out, and prepared statements or advisory locks it leaves (which
-- a rollback keeps) are removed and break the pipeline (rag._source_rows). She owns the
-- reader but cannot change it: it lives in schema rag_source, on which she has no privilege
-- (no USAGE: she cannot name it to ALTER it; no CREATE: she cannot replace it; the one she
-- is lent while it is created is revoked before the transaction ends, by a deferred trigger
-- at the latest), and rag._source_rows checks its owner, SECURITY DEFINER, settings and body
-- against what was recorded before every call. Nothing of hers runs while it is created: it
-- is made by the role defining the pipeline (which must have her privileges: a member of
-- her role, or a superuser; a pipeline's SQL never runs with rights its author lacks) and
-- handed to her; its plpgsql body is not analysed until it runs; the fragments are parsed
-- and typed by the reader itself ('check'), as her. It finds the columns' current names by
-- number each time it runs, so renames need no new reader; its settings pin TimeZone,
-- DateStyle, IntervalStyle, extra_float_digits, bytea_output and lc_monetary, so a key has
-- one text in every session.

-- rag._pinned_settings(): the SET clauses under which a key becomes text (capture, reader):
-- the same text of the same key in every session.
CREATE OR REPLACE FUNCTION rag._pinned_settings()
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ' SET TimeZone = ''UTC'' SET DateStyle = ''ISO, YMD'''
        ' SET IntervalStyle = ''postgres'' SET extra_float_digits = ''1'''
        ' SET bytea_output = ''hex'' SET lc_monetary = ''C'''
$$;

-- rag._partition_tree(source): the table and its partitions at every level, from the
-- catalog alone (pg_partition_tree locks every partition until the transaction ends, which
-- in an event trigger would make other sessions' DDL on those partitions wait).
CREATE OR REPLACE FUNCTION rag._partition_tree(source oid)
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree (relid) AS (
        SELECT c.oid FROM pg_class AS c WHERE c.oid = source
        UNION
        SELECT i.inhrelid FROM tree AS t
        INNER JOIN pg_inherits AS i ON i.inhparent = t.relid
        INNER JOIN pg_class AS c ON c.oid = i.inhrelid AND c.relispartition
    )
    SELECT t.relid FROM tree AS t
$$;

-- rag._key_columns(source, attnums): the key columns as they are now, in key order: name,
-- type, the type a text key is cast to for comparisons (a domain's base type: casting to a
-- domain runs its CHECK), that type qualified, whether that type is trusted, and the schema
-- of its trusted equality operator. Trusted: a base or enum type owned by a superuser, with
-- an `=` for two of it owned by a superuser (pg_catalog's types and enums: pg_catalog's `=`,
-- where only a superuser can add one): only then do other roles compare keys (rag.search, row-level
-- security), and what they run is a superuser's. NULL name: a dropped column.
DROP FUNCTION IF EXISTS rag._key_columns(regclass, smallint[]);
CREATE OR REPLACE FUNCTION rag._key_columns(source regclass, attnums smallint[])
RETURNS TABLE (
    ord bigint, attnum smallint, name text, type_oid oid, base_type text, trusted boolean,
    eq_schema text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE k AS (
        SELECT u.ord, u.attnum, a.attname::text AS name, a.atttypid AS type_oid
        FROM unnest(attnums) WITH ORDINALITY AS u (attnum, ord)
        LEFT JOIN pg_attribute AS a
            ON a.attrelid = source AND a.attnum = u.attnum AND NOT a.attisdropped
    ), base (ord, type_oid) AS (
        SELECT k.ord, k.type_oid FROM k
        UNION ALL
        SELECT b.ord, t.typbasetype FROM base AS b
        INNER JOIN pg_type AS t ON t.oid = b.type_oid
        WHERE t.typtype = 'd'
    )
    SELECT k.ord, k.attnum, k.name, k.type_oid,
        format('%I.%I', n.nspname, t.typname),
        r.rolsuper AND t.typtype IN ('b', 'e') AND t.oid <> 'money'::regtype
            AND e.nspname IS NOT NULL,
        e.nspname::text
    FROM k
    LEFT JOIN base AS b ON b.ord = k.ord
        AND NOT EXISTS (SELECT FROM pg_type AS d WHERE d.oid = b.type_oid AND d.typtype = 'd')
    LEFT JOIN pg_type AS t ON t.oid = b.type_oid
    LEFT JOIN pg_namespace AS n ON n.oid = t.typnamespace
    LEFT JOIN pg_roles AS r ON r.oid = t.typowner
    LEFT JOIN LATERAL (
        -- (An enum compares with pg_catalog's anyenum = anyenum.)
        SELECT 'pg_catalog'::name AS nspname WHERE n.nspname = 'pg_catalog' OR t.typtype = 'e'
        UNION ALL
        (SELECT s.nspname FROM pg_operator AS o
            INNER JOIN pg_namespace AS s ON s.oid = o.oprnamespace
            INNER JOIN pg_roles AS w ON w.oid = o.oprowner AND w.rolsuper
            WHERE n.nspname <> 'pg_catalog' AND t.typtype <> 'e' AND o.oprname = '=' AND o.oprleft = t.oid
                AND o.oprright = t.oid
            ORDER BY o.oprnamespace = t.typnamespace DESC, s.nspname
            LIMIT 1)
    ) AS e ON true
    ORDER BY k.ord
$$;

-- rag._key_text_sql(source, attnums): the key of row "s" as text, through the types' output
-- functions only (pg_catalog.concat: never a cast, so never a cast its owner wrote); a
-- composite key as a JSON array of those texts. Under rag._pinned_settings, the same in
-- every session. Collated "C": keys are compared byte by byte wherever they go (a UNION of
-- old and new keys under a case-insensitive collation would keep 'Apple' or 'APPLE', not
-- both). NULL when a key column is gone.
CREATE OR REPLACE FUNCTION rag._key_text_sql(source regclass, attnums smallint[])
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN bool_or(k.name IS NULL) THEN NULL
        WHEN count(*) = 1 THEN format('pg_catalog.concat(s.%I) COLLATE pg_catalog."C"', min(k.name))
        ELSE format('pg_catalog.jsonb_build_array(%s)::pg_catalog.text',
            string_agg(format('pg_catalog.concat(s.%I)', k.name), ', ' ORDER BY k.ord))
    END
    FROM rag._key_columns(source, attnums) AS k
$$;

-- rag._key_match_sql(source, attnums, param): "row s has the key in text parameter param",
-- with every name qualified, so it means the same under any search_path; for the trusted
-- types rag._key_columns names (other roles run it). A column under a nondeterministic
-- collation (case-insensitive, say) is also compared under "C": 'Apple' does not name the
-- row 'APPLE' (the index still finds the candidates). NULL when a column is gone or a type
-- is not trusted.
CREATE OR REPLACE FUNCTION rag._key_match_sql(source regclass, attnums smallint[], param text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN bool_or(k.name IS NULL OR NOT k.trusted) THEN NULL
        -- (The aggregates run before CASE picks: untrusted rows must format too.)
        ELSE string_agg(format('s.%1$I OPERATOR(%2$I.=) %3$s%4$s', k.name,
            coalesce(k.eq_schema, 'pg_catalog'), v.value,
            CASE WHEN x.nondeterministic THEN format(
                ' AND (s.%I COLLATE pg_catalog."C") OPERATOR(%I.=) %s', k.name,
                coalesce(k.eq_schema, 'pg_catalog'), v.value) END),
            ' AND ' ORDER BY k.ord)
    END
    FROM rag._key_columns(source, attnums) AS k
    CROSS JOIN LATERAL (SELECT CASE
        WHEN cardinality(attnums) = 1 THEN format('%s::%s', param, k.base_type)
        ELSE format('((%s::pg_catalog.jsonb OPERATOR(pg_catalog.->>) %s))::%s', param,
            k.ord - 1, k.base_type)
    END AS value) AS v
    CROSS JOIN LATERAL (SELECT EXISTS (SELECT FROM pg_attribute AS a
        INNER JOIN pg_collation AS c ON c.oid = a.attcollation
        WHERE a.attrelid = source AND a.attnum = k.attnum AND NOT c.collisdeterministic)
        AS nondeterministic) AS x
$$;

-- rag._placeholder_sql(fragment, placeholders): the fragment with each named source column
-- replaced by its placeholder (pgask/source_columns.py).
CREATE OR REPLACE FUNCTION rag._placeholder_sql(fragment text, placeholders jsonb)
RETURNS text
LANGUAGE plpython3u
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
import json
from pgask import source_columns
return source_columns.to_placeholders(fragment, json.loads(placeholders))
$$;

-- rag._reader_sql(pipeline, function_name, checks): the CREATE FUNCTION of a pipeline's
-- reader rag_source.<function_name>(mode, keys): mode 'rows' returns (document_id, content,
-- title, metadata, problem) of the rows with those keys (problem: one row's own error; the
-- others are still read); 'keys' returns the key of every row; 'check' parses and types each
-- fragment of `checks` (a JSON array of [fragment, what it is, the type it must give]) over
-- an all-NULL row, as the owner, and returns (what, its type, the type wanted, NULL,
-- problem). Errors that concern every row (a column gone, a type or function renamed:
-- SQLSTATE classes 42 and 0A) are raised.
CREATE OR REPLACE FUNCTION rag._reader_sql(pipeline text, function_name text, checks jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._reader_sql');
    nonce text := substr(md5(function_name), 1, 10);
    placeholders jsonb;
    numbers jsonb;
BEGIN
    SELECT
        coalesce(jsonb_object_agg(a.attname, format('_pgask_%s_%s', a.attnum, nonce)), '{}'),
        coalesce(jsonb_object_agg(format('_pgask_%s_%s', a.attnum, nonce), a.attnum), '{}')
    INTO placeholders, numbers
    FROM pg_attribute AS a
    WHERE a.attrelid = p.source AND a.attnum > 0 AND NOT a.attisdropped;
    RETURN format($fmt$CREATE FUNCTION rag_source.%I(mode text, keys text[])
RETURNS TABLE (document_id text, content text, title text, metadata text, problem text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp%s
SET row_security = off
AS $pgask_reader$
DECLARE
    source constant oid := %s;
    key_attnums smallint[];
    placeholders constant jsonb := %L;
    fragments text[] := ARRAY[%L, %L, %L];
    checks jsonb := %L;
    placeholder text;
    number smallint;
    column_name text;
    key_text text;
    key_columns text;
    key_match text;
    key_casts text;
    composite_match text;
    query text;
    result jsonb;
    one_key text;
    one_result jsonb;
    one_check jsonb;
    one_type text;
BEGIN
    -- The columns' current names (a dropped one stops every row).
    FOR placeholder, number IN SELECT x.key, x.value::smallint FROM jsonb_each_text(placeholders) AS x
    LOOP
        CONTINUE WHEN NOT (array_to_string(fragments, ' ') || checks::text LIKE '%%' || placeholder || '%%');
        SELECT a.attname INTO column_name FROM pg_attribute AS a
        WHERE a.attrelid = source AND a.attnum = number AND NOT a.attisdropped;
        IF NOT found THEN
            RAISE EXCEPTION 'column number %% of %% was dropped', number, source::regclass
                USING errcode = 'undefined_column';
        END IF;
        fragments := ARRAY(SELECT replace(f.fragment, placeholder, quote_ident(column_name))
            FROM unnest(fragments) WITH ORDINALITY AS f (fragment, n) ORDER BY f.n);
        checks := (SELECT coalesce(jsonb_agg(jsonb_build_array(
                replace(e.c ->> 0, placeholder, quote_ident(column_name)), e.c -> 1, e.c -> 2)
                ORDER BY e.n), '[]')
            FROM jsonb_array_elements(checks) WITH ORDINALITY AS e (c, n));
    END LOOP;
    IF mode = 'check' THEN
        FOR one_check IN SELECT c FROM jsonb_array_elements(checks) AS c LOOP
            BEGIN
                EXECUTE format('SELECT pg_typeof((%%s))::text FROM (SELECT 1) AS one'
                    ' LEFT JOIN (SELECT * FROM %%s LIMIT 0) AS s ON true', one_check ->> 0,
                    source::regclass) INTO one_type;
                RETURN QUERY SELECT one_check ->> 1, one_type, one_check ->> 2, NULL::text, NULL::text;
            EXCEPTION WHEN others THEN
                RETURN QUERY SELECT one_check ->> 1, NULL::text, one_check ->> 2, NULL::text,
                    SQLSTATE || ': ' || SQLERRM;
            END;
        END LOOP;
        RETURN;
    END IF;
    -- The key: the primary key as it is now (the capture function follows it too).
    SELECT array_agg(k.attnum::smallint ORDER BY k.n) INTO key_attnums
    FROM pg_index AS i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
    WHERE i.indrelid = source AND i.indisprimary;
    IF key_attnums IS NULL THEN
        RAISE EXCEPTION 'table %% has no primary key', source::regclass
            USING errcode = 'undefined_column';
    END IF;
    -- (The keys are matched in a sublink: the fragments, evaluated in the outer query, see
    -- no name but the row's, whatever its columns are called.)
    SELECT string_agg(format('pg_catalog.concat(s.%%I)', a.attname), ', ' ORDER BY u.n),
        string_agg(format('((k._pgask_key::pg_catalog.jsonb ->> %%s))::%%s', u.n - 1,
            format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY u.n),
        string_agg(format('s.%%I', a.attname), ', ' ORDER BY u.n),
        string_agg(format('k._pgask_key::%%s', format_type(a.atttypid, a.atttypmod)), '')
    INTO key_text, composite_match, key_columns, key_match
    FROM unnest(key_attnums) WITH ORDINALITY AS u (attnum, n)
    INNER JOIN pg_attribute AS a ON a.attrelid = source AND a.attnum = u.attnum
        AND NOT a.attisdropped;
    IF key_text IS NULL OR (SELECT count(*) FROM pg_attribute AS a WHERE a.attrelid = source
            AND a.attnum = ANY(key_attnums) AND NOT a.attisdropped) <> cardinality(key_attnums) THEN
        RAISE EXCEPTION 'a key column of %% was dropped', source::regclass
            USING errcode = 'undefined_column';
    END IF;
    IF cardinality(key_attnums) > 1 THEN
        key_text := format('pg_catalog.jsonb_build_array(%%s)::pg_catalog.text', key_text);
        key_match := composite_match;
    END IF;
    -- (Keys compare as text byte by byte, as the capture wrote them: under a case-insensitive
    -- collation the key 'Apple' does not read the row 'APPLE'.)
    key_text := format('(%%s) COLLATE pg_catalog."C"', key_text);
    key_casts := key_match;
    key_match := format('(%%s) IN (SELECT %%s FROM pg_catalog.unnest($1) AS k (_pgask_key))'
        ' AND %%s OPERATOR(pg_catalog.=) ANY ($1)', key_columns, key_match, key_text);
    IF mode = 'keys' THEN
        RETURN QUERY EXECUTE format('SELECT %%s, NULL::text, NULL::text, NULL::text, NULL::text'
            ' FROM %%s AS s', key_text, source::regclass);
        RETURN;
    END IF;
    query := format('SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array('
        'r.document_id, r.content, r.title, r.metadata)), ''[]'') FROM (SELECT %%s AS document_id,'
        ' (%%s)::text AS content, (%%s)::text AS title, (%%s)::text AS metadata'
        ' FROM %%s AS s WHERE %%s) AS r',
        key_text, fragments[1], fragments[2], fragments[3], source::regclass, key_match);
    BEGIN
        EXECUTE query INTO result USING keys;
    EXCEPTION WHEN others THEN
        IF SQLSTATE LIKE '42%%' OR SQLSTATE LIKE '0A%%' THEN
            RAISE;
        END IF;
        -- One row failed: each row alone, so only the bad one carries its error.
        result := '[]';
        FOREACH one_key IN ARRAY keys LOOP
            BEGIN
                -- A key that no longer converts to the key's type (a text key retyped to
                -- int, an enum value renamed) names no row: its chunks are removed.
                EXECUTE format('SELECT %%s FROM pg_catalog.unnest($1) AS k (_pgask_key)',
                    key_casts) USING ARRAY[one_key];
            EXCEPTION WHEN others THEN
                IF SQLSTATE LIKE '42%%' OR SQLSTATE LIKE '0A%%' THEN
                    RAISE;
                END IF;
                CONTINUE;
            END;
            BEGIN
                EXECUTE query INTO one_result USING ARRAY[one_key];
                result := result || one_result;
            EXCEPTION WHEN others THEN
                IF SQLSTATE LIKE '42%%' OR SQLSTATE LIKE '0A%%' THEN
                    RAISE;
                END IF;
                result := result || jsonb_build_array(jsonb_build_array(
                    one_key, NULL, NULL, NULL, SQLSTATE || ': ' || SQLERRM));
            END;
        END LOOP;
    END;
    RETURN QUERY SELECT e ->> 0, e ->> 1, e ->> 2, e ->> 3, e ->> 4
        FROM jsonb_array_elements(result) AS e;
END;
$pgask_reader$$fmt$,
        function_name, rag._pinned_settings(), p.source::oid, numbers,
        rag._placeholder_sql(p.content_sql, placeholders),
        rag._placeholder_sql(p.title_sql, placeholders),
        rag._placeholder_sql(p.metadata_sql, placeholders),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(
                rag._placeholder_sql(c ->> 0, placeholders), c ->> 1, c ->> 2)), '[]')
            FROM jsonb_array_elements(coalesce(checks, '[]')) AS c));
END;
$body$;

-- rag._reader_shaped(reader): the function is what rag._source_rows calls by name: a plain
-- function (mode text, keys text[]) returning a set, and the only function of its name in
-- rag_source (so that the name resolves to it alone).
CREATE OR REPLACE FUNCTION rag._reader_shaped(reader oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(bool_and(f.prokind = 'f' AND f.proretset
        AND f.pronargs = 2 AND f.proargtypes[0] = 'pg_catalog.text'::regtype
        AND f.proargtypes[1] = 'pg_catalog.text[]'::regtype
        AND NOT EXISTS (SELECT FROM pg_proc AS o WHERE o.pronamespace = f.pronamespace
            AND o.proname = f.proname AND o.oid <> f.oid)), false)
    FROM pg_proc AS f WHERE f.oid = reader
$$;

-- rag._reader_digest(reader): what a reader must still be at every use: its owner, SECURITY
-- DEFINER, schema, settings and body.
CREATE OR REPLACE FUNCTION rag._reader_digest(reader oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT md5(concat_ws(E'\x1f', f.proowner, f.prosecdef, f.pronamespace, f.prolang,
        array_to_string(f.proconfig, E'\x1e'), f.prosrc))
    FROM pg_proc AS f WHERE f.oid = reader
$$;

-- rag._require_lender(what, owner): the caller may lend `owner` CREATE on rag_source (and
-- take it back): a pipeline admin (or a superuser) who has that owner's rights, as
-- rag._bind_source's caller must.
CREATE OR REPLACE FUNCTION rag._require_lender(what text, owner_role oid)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin(what);
    IF NOT pg_has_role(rag._caller(), owner_role, 'USAGE') THEN
        RAISE EXCEPTION '%: role % is not a member of %', what, rag._caller(),
            owner_role::regrole
            USING errcode = 'insufficient_privilege';
    END IF;
END;
$$;

-- rag._open_source_schema(owner, prefix): lends the source's owner USAGE and CREATE on
-- rag_source, so that a reader can be handed to it (ALTER FUNCTION ... OWNER TO needs the
-- new owner to be allowed to create it there), and returns the name of the one function the
-- loan is for: prefix, an underscore and 12 random hex digits (gen_random_uuid: nothing in
-- the session can steer it). No other function can be created or changed in rag_source
-- (rag._on_reader_change), so a name once used never names anything else, and a recorded
-- reader never changes. rag._close_source_schema takes the loan back, and so, at the latest
-- when the transaction commits, does a deferred trigger (rag._source_schema_lent): no
-- source owner keeps it. The loan is recorded after the GRANT: a trigger made immediate
-- (SET CONSTRAINTS ALL IMMEDIATE) takes it back at once rather than before it was given.
-- Only a pipeline admin with the owner's rights may ask (rag._require_lender). SECURITY
-- DEFINER: rag_source belongs to pgask_owner.
DROP FUNCTION IF EXISTS rag._open_source_schema(oid);
CREATE OR REPLACE FUNCTION rag._open_source_schema(owner_role oid, prefix text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    function_name text := prefix || '_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12);
BEGIN
    IF owner_role <> (SELECT n.nspowner FROM pg_namespace AS n WHERE n.nspname = 'rag_source') THEN
        PERFORM rag._require_lender('rag._bind_source', owner_role);
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA rag_source TO %I', owner_role::regrole);
    END IF;
    -- (pgask_owner's own tables, rag.documents: it owns the schema; the name is recorded all
    -- the same, for rag._on_reader_change.)
    INSERT INTO rag.source_schema_loans (owner_role, function_name)
    VALUES (owner_role, function_name);
    RETURN function_name;
END;
$$;
COMMENT ON FUNCTION rag._open_source_schema(oid, text) IS
'SECURITY DEFINER: rag_source belongs to pgask_owner; lends a source owner CREATE until commit';

-- rag._close_source_schema(owner): takes back what rag._open_source_schema lent.
CREATE OR REPLACE FUNCTION rag._close_source_schema(owner_role oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF owner_role <> (SELECT n.nspowner FROM pg_namespace AS n WHERE n.nspname = 'rag_source')
            AND EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = owner_role) THEN
        PERFORM rag._require_lender('rag._bind_source', owner_role);
        EXECUTE format('REVOKE ALL ON SCHEMA rag_source FROM %I', owner_role::regrole);
    END IF;
END;
$$;
COMMENT ON FUNCTION rag._close_source_schema(oid) IS
'SECURITY DEFINER: rag_source belongs to pgask_owner; revokes a loan of CREATE';

-- rag._source_schema_lent(): the deferred trigger that revokes every loan of
-- rag._open_source_schema when its transaction commits, whatever the caller did in between.
CREATE OR REPLACE FUNCTION rag._source_schema_lent()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (Not through rag._close_source_schema: whoever the session is by now, the loan ends.)
    IF new.owner_role <> (SELECT n.nspowner FROM pg_namespace AS n WHERE n.nspname = 'rag_source')
            AND EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = new.owner_role) THEN
        EXECUTE format('REVOKE ALL ON SCHEMA rag_source FROM %I', new.owner_role::regrole);
    END IF;
    DELETE FROM rag.source_schema_loans AS l WHERE l.owner_role = new.owner_role;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION rag._source_schema_lent() IS
'SECURITY DEFINER: revokes, at commit, the CREATE on rag_source (pgask_owner''s) that was lent';

-- Made once: re-creating it at every install would lock the table against the readers
-- running meanwhile, to the end of the install.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid = 'rag.source_schema_loans'::pg_catalog.regclass
                AND t.tgname = 'revoke_at_commit') THEN
        CREATE CONSTRAINT TRIGGER revoke_at_commit AFTER INSERT ON rag.source_schema_loans
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION rag._source_schema_lent();
    END IF;
END;
$$;

-- rag._record_reader(pipeline, reader): the pipeline's new reader, what it must stay, and
-- the old one dropped (pgask_owner owns schema rag_source, so may drop what is in it).
CREATE OR REPLACE FUNCTION rag._record_reader(pipeline text, reader oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- (Citus: pgask's functions live on the coordinator only; see docs/scale-out.md)
SET "citus.enable_ddl_propagation" = off
AS $$
DECLARE
    old oid := (SELECT p.reader FROM rag.pipelines AS p WHERE p.name = pipeline);
    source oid := (SELECT p.source FROM rag.pipelines AS p WHERE p.name = pipeline);
BEGIN
    -- (Executable by admins directly: only a member of the source's owner records a reader,
    -- and only one that owner owns, in rag_source.)
    PERFORM rag._require_member('rag._bind_source', source);
    IF NOT EXISTS (SELECT FROM pg_proc AS f INNER JOIN pg_class AS c ON c.oid = source
            WHERE f.oid = reader AND f.proowner = c.relowner AND f.prosecdef
                AND f.pronamespace = 'rag_source'::regnamespace AND rag._reader_shaped(f.oid)) THEN
        RAISE EXCEPTION 'rag._record_reader: % is not a reader of %', reader::regprocedure,
            source::regclass USING errcode = 'invalid_parameter_value';
    END IF;
    UPDATE rag.pipelines AS p SET reader = _record_reader.reader,
        reader_digest = rag._reader_digest(_record_reader.reader)
    WHERE p.name = pipeline;
    IF old IS NOT NULL AND old <> reader
            AND EXISTS (SELECT FROM pg_proc AS f WHERE f.oid = old) THEN
        EXECUTE format('DROP FUNCTION %s', old::regprocedure);
    END IF;
END;
$$;
COMMENT ON FUNCTION rag._record_reader(text, oid) IS
'SECURITY DEFINER: rag.pipelines and rag_source belong to pgask_owner';

DROP FUNCTION IF EXISTS rag._check_fragment(regclass, text, text, text, text);
DROP FUNCTION IF EXISTS rag._open_source_schema(oid, boolean);

-- rag._bind_source(pipeline, caller, checks): creates the pipeline's reader and its capture
-- triggers, and hands the reader to the source table's owner. The calling role must have
-- that owner's privileges (a member of it with INHERIT, or a superuser): the pipeline's SQL
-- will run with the owner's rights, so only someone who has them may write it. No role is
-- switched and nothing of the owner's runs here (CREATE FUNCTION of plpgsql, ALTER FUNCTION,
-- GRANT, CREATE TRIGGER evaluate nothing); the fragments are then parsed and typed by the
-- reader itself, as the owner: `checks` is a JSON array of [fragment, what it is, the type it
-- must give: text, or anything] (rag.create_pipeline names each metadata entry), by default
-- the content, title and metadata. Run by rag.create_pipeline, rag.alter_pipeline, `pgask
-- install` and the owner-change event trigger.
CREATE OR REPLACE FUNCTION rag._bind_source(pipeline text, caller text, checks jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (Citus: pgask's functions live on the coordinator only; see docs/scale-out.md)
SET "citus.enable_ddl_propagation" = off
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, caller);
    owner_role oid := (SELECT c.relowner FROM pg_class AS c WHERE c.oid = p.source);
    function_name text;
    reader regprocedure;
    checked record;
BEGIN
    IF owner_role IS NULL THEN
        RAISE EXCEPTION '%: the source table of pipeline % was dropped', caller, p.name
            USING errcode = 'undefined_table';
    END IF;
    -- The reader's body is dollar-quoted with this tag: SQL containing it would end the body
    -- and run the rest as whoever binds the pipeline next.
    IF position('$pgask_reader$' IN concat_ws(' ', p.content_sql, p.title_sql, p.metadata_sql,
            checks::text)) > 0 THEN
        RAISE EXCEPTION '%: pipeline %''s SQL must not contain $pgask_reader$', caller, p.name
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF NOT (pg_has_role(current_user, owner_role, 'USAGE')
            AND pg_has_role(rag._caller(), owner_role, 'USAGE')) THEN
        RAISE EXCEPTION '%: role % is not a member of %, the owner of %', caller, rag._caller(),
            owner_role::regrole, p.source
            USING errcode = 'insufficient_privilege',
            hint = 'A pipeline''s SQL runs with the rights of its source table''s owner, so '
                'only a role with them (a member that inherits them, or a superuser) may '
                'define it.';
    END IF;
    function_name := rag._open_source_schema(owner_role, p.name);
    EXECUTE rag._reader_sql(p.name, function_name, coalesce(checks, jsonb_build_array(
        jsonb_build_array(p.content_sql, format('content expression %s', p.content_sql), 'text'),
        jsonb_build_array(p.title_sql, 'title', 'text'),
        jsonb_build_array(p.metadata_sql, 'metadata', 'jsonb'))));
    reader := format('rag_source.%I(text, text[])', function_name)::regprocedure;
    IF owner_role <> (SELECT r.oid FROM pg_roles AS r WHERE r.rolname = current_user) THEN
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', reader, owner_role::regrole);
    END IF;
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', reader);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgask_owner', reader);
    PERFORM rag._attach_capture(p.name);
    PERFORM rag._close_source_schema(owner_role);
    -- Recorded before any of the owner's code has run; rag._source_rows checks it each time.
    PERFORM rag._record_reader(p.name, reader);
    FOR checked IN
        SELECT r.document_id AS what, r.content AS found, r.title AS wanted, r.problem
        FROM rag._source_rows(p.name, 'check', NULL) AS r
    LOOP
        IF checked.problem IS NOT NULL THEN
            RAISE EXCEPTION '%: %: %', caller, checked.what,
                substr(checked.problem, 8)
                USING errcode = left(checked.problem, 5);
        ELSIF checked.wanted = 'text'
                AND checked.found NOT IN ('text', 'character varying', 'character') THEN
            RAISE EXCEPTION '%: % must give text, not %', caller, checked.what, checked.found
                USING errcode = 'datatype_mismatch';
        END IF;
    END LOOP;
END;
$$;

-- rag._reader_problem(pipeline): NULL when the pipeline's reader is still what
-- rag._bind_source made (owned by the source's owner, SECURITY DEFINER, in rag_source, the
-- same settings and body), else what is wrong.
CREATE OR REPLACE FUNCTION rag._reader_problem(pipeline text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p.reader IS NULL OR f.oid IS NULL THEN 'its reader function is missing'
        WHEN c.oid IS NULL THEN 'its source table was dropped'
        WHEN f.proowner <> c.relowner THEN format('%s has a new owner, %s', c.oid::regclass,
            c.relowner::regrole)
        WHEN NOT f.prosecdef OR f.pronamespace <> 'rag_source'::regnamespace
            OR NOT rag._reader_shaped(f.oid)
            OR rag._reader_digest(f.oid) IS DISTINCT FROM p.reader_digest
            THEN 'its reader function was changed'
    END
    FROM rag.pipelines AS p
    LEFT JOIN pg_proc AS f ON f.oid = p.reader
    LEFT JOIN pg_class AS c ON c.oid = p.source
    WHERE p.name = pipeline
$$;

-- rag._on_reader_change(): ddl_command_end of every command: refuses any change to a
-- pipeline's reader (SECURITY INVOKER, settings, owner, name, schema, body), by anyone,
-- and anything else made in or moved into rag_source but the function a loan names.
-- rag._source_rows checks a reader and then calls it; a change committed in between would
-- run as pgask_owner, so a reader never changes once recorded: rag.alter_pipeline makes a
-- new one. (Dropping it is allowed: the pipeline then says it is broken, and a call by its
-- old OID fails.) SECURITY DEFINER: rag.pipelines is pgask_owner's.
CREATE OR REPLACE FUNCTION rag._on_reader_change()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed text;
BEGIN
    SELECT string_agg(format('%s (pipeline %s)', c.object_identity, p.name), ', ')
    INTO changed
    FROM pg_event_trigger_ddl_commands() AS c
    INNER JOIN rag.pipelines AS p ON p.reader = c.objid
    WHERE c.classid = 'pg_proc'::regclass;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'pgask: % is a pipeline''s reader, which cannot be changed', changed
            USING errcode = 'insufficient_privilege',
            hint = 'rag.alter_pipeline(name) makes a new reader; rag.drop_pipeline removes it.';
    END IF;
    -- Nor can anything else in rag_source be made or changed (a function, procedure,
    -- aggregate, type, table, operator, ... created there or moved in) but the one function
    -- a loan of this transaction names (rag._bind_source's new reader).
    SELECT string_agg(c.object_identity, ', ') INTO changed
    FROM pg_event_trigger_ddl_commands() AS c
    LEFT JOIN pg_proc AS f ON c.classid = 'pg_proc'::regclass AND f.oid = c.objid
    WHERE (c.schema_name = 'rag_source' OR f.pronamespace = 'rag_source'::regnamespace)
        AND NOT (f.prokind = 'f' AND f.pronamespace = 'rag_source'::regnamespace
            AND EXISTS (SELECT FROM rag.source_schema_loans AS l
                WHERE l.function_name = f.proname));
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'pgask: only rag.create_pipeline and rag.alter_pipeline may make '
            'objects in schema rag_source, not %', changed
            USING errcode = 'insufficient_privilege';
    END IF;
END;
$$;
COMMENT ON FUNCTION rag._on_reader_change() IS
'SECURITY DEFINER: rag.pipelines belongs to pgask_owner';

-- (Through EXECUTE: there is no CREATE OR REPLACE EVENT TRIGGER.)
DO $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgask_readers;
    -- (Every command: objects of any kind can be made in, or moved into, rag_source.)
    EXECUTE 'CREATE EVENT TRIGGER pgask_readers ON ddl_command_end'
        ' EXECUTE FUNCTION rag._on_reader_change()';
END;
$$;

-- rag._session_state(): what a rolled-back subtransaction leaves in the session: prepared
-- statements (PREPARE is not transactional) and session-level advisory locks.
CREATE OR REPLACE FUNCTION rag._session_state()
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'statements', (SELECT coalesce(jsonb_object_agg(s.name,
            s.statement || ' @ ' || s.prepare_time), '{}') FROM pg_prepared_statements AS s),
        'locks', (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(l.classid, l.objid,
            l.objsubid, l.mode)), '[]') FROM pg_locks AS l
            WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted))
$$;

-- rag._end_session(reason): ends this session (FATAL): what the client prepared on it was
-- replaced or removed by a source owner's code, and the client would run hers next.
CREATE OR REPLACE FUNCTION rag._end_session(reason text)
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
#PGASK_PREAMBLE
plpy.fatal(reason)
$$;

-- rag._source_rows(pipeline, mode, keys): the pipeline's reader, called after checking that
-- it is still what rag._bind_source made (rag._reader_problem; otherwise SQLSTATE 55000
-- saying what to do), inside a subtransaction that is rolled back once its rows are copied
-- out, or when it fails: whatever the owner's code changed in the session (settings such as
-- search_path, temporary objects) is undone. Then, however the reader ended, what a
-- rollback keeps is checked: prepared statements it added are removed and advisory locks it
-- took released, and the pipeline is refused (55000); a prepared statement of the caller's
-- that it replaced or removed ends the session (the client would run her SQL next). A
-- query_canceled the reader raised itself (RAISE, no cancel) is its error (38000), so it
-- cannot stop the worker or an install for other pipelines; a real cancel stays one.
-- SECURITY DEFINER: only pgask_owner may execute readers. Executable by pgask's admins and
-- workers.
CREATE OR REPLACE FUNCTION rag._source_rows(pipeline text, mode text, keys text[])
RETURNS TABLE (document_id text, content text, title text, metadata text, problem text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag._source_rows');
    problem text := rag._reader_problem(pipeline);
    before jsonb := rag._session_state();
    after jsonb;
    result jsonb;
    leftover text;
    lock jsonb;
    failed_state text;
    failed_message text;
    failed_context text;
BEGIN
    IF problem IS NOT NULL THEN
        -- (The repair in the message too: the worker marks the pipeline broken with it.)
        RAISE EXCEPTION '%', format('pipeline %s: %s: a member of the owner of %s runs '
            'SELECT rag.alter_pipeline(%L) to bind it again', p.name, problem, p.source, p.name)
            USING errcode = 'object_not_in_prerequisite_state',
            hint = format('A member of the owner of %s runs SELECT rag.alter_pipeline(%L) to '
                'bind it again.', p.source, p.name);
    END IF;
    BEGIN
        EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_array(r.document_id, r.content,'
            ' r.title, r.metadata, r.problem)), ''[]'') FROM %s($1::pg_catalog.text,'
            ' $2::pg_catalog.text[]) AS r', p.reader::regproc)
        INTO result USING mode, keys;
        RAISE EXCEPTION USING errcode = 'PGK01';  -- roll back what the reader left
    EXCEPTION WHEN SQLSTATE 'PGK01' THEN
        NULL;
    WHEN others OR query_canceled THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT,
            failed_context = PG_EXCEPTION_CONTEXT;
    END;
    after := rag._session_state();
    IF after IS DISTINCT FROM before THEN
        IF EXISTS (SELECT FROM jsonb_each_text(before -> 'statements') AS b
                WHERE (after -> 'statements' ->> b.key) IS DISTINCT FROM b.value) THEN
            PERFORM rag._end_session(format('pgask: pipeline %s: its source''s code replaced or '
                'removed prepared statements of this session; the session ends, so that its '
                'client runs none of that code (reconnect)', p.name));
        END IF;
        FOR leftover IN
            SELECT a.key FROM jsonb_each_text(after -> 'statements') AS a
            WHERE NOT (before -> 'statements') ? a.key
        LOOP
            EXECUTE format('DEALLOCATE %I', leftover);
        END LOOP;
        FOR lock IN
            SELECT l FROM jsonb_array_elements(after -> 'locks') AS l
            WHERE NOT (before -> 'locks') @> jsonb_build_array(l)
        LOOP
            -- (Taken any number of times: released until it is gone.)
            FOR attempt IN 1..10000 LOOP
                EXIT WHEN NOT CASE
                    WHEN (lock ->> 2)::integer = 1 AND lock ->> 3 = 'ShareLock' THEN
                        pg_advisory_unlock_shared(((lock ->> 0)::bigint << 32) | (lock ->> 1)::bigint)
                    WHEN (lock ->> 2)::integer = 1 THEN
                        pg_advisory_unlock(((lock ->> 0)::bigint << 32) | (lock ->> 1)::bigint)
                    WHEN lock ->> 3 = 'ShareLock' THEN
                        pg_advisory_unlock_shared((lock ->> 0)::bigint::integer,
                            (lock ->> 1)::bigint::integer)
                    ELSE pg_advisory_unlock((lock ->> 0)::bigint::integer,
                        (lock ->> 1)::bigint::integer)
                END;
            END LOOP;
        END LOOP;
        IF (after -> 'statements') IS DISTINCT FROM (before -> 'statements')
                OR NOT (before -> 'locks') @> (after -> 'locks') THEN
            RAISE EXCEPTION 'pipeline %: its source''s code left prepared statements or advisory '
                'locks in the session (they were removed)', p.name
                USING errcode = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
    IF failed_state IS NOT NULL THEN
        IF failed_state = '57014' AND split_part(failed_context, E'\n', 1) LIKE '% at RAISE' THEN
            -- Raised by her code, not a cancel: her pipeline's error, no one else's.
            RAISE EXCEPTION 'pipeline %: its source''s code raised query_canceled: %', p.name,
                failed_message USING errcode = 'external_routine_exception';
        END IF;
        RAISE EXCEPTION '%', failed_message USING errcode = failed_state;
    END IF;
    RETURN QUERY SELECT e ->> 0, e ->> 1, e ->> 2, e ->> 3, e ->> 4
        FROM jsonb_array_elements(result) AS e;
END;
$$;
COMMENT ON FUNCTION rag._source_rows(text, text, text[]) IS
'SECURITY DEFINER: only pgask_owner may execute a pipeline''s reader';
