-- Ownership: everything in schema rag belongs to pgask_owner, a role without superuser,
-- role creation or row-level-security bypass (docs/security.md). `pgask install` runs as a
-- superuser (PL/Python is an untrusted language: only a superuser may create its functions)
-- and hands over what it created: the tables here, first (so that pipelines bound during
-- the install are bound to tables pgask_owner already owns), and the rest last
-- (999_ownership.sql). SECURITY DEFINER functions then run as pgask_owner. The event
-- triggers stay the superuser's (PostgreSQL requires it); the functions they call are
-- pgask_owner's. Functions in schema rag_source belong to the owners of source tables and
-- are left alone.

-- rag._take_ownership(): gives pgask_owner every table, view, sequence and routine of
-- schema rag (and the routines of rag_api, and public.rag_answer) that it does not own yet.
-- Run by the installer.
CREATE OR REPLACE FUNCTION rag._take_ownership()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    object record;
BEGIN
    -- A routine of another role (not a superuser: not the installer) in rag or rag_api was
    -- planted there: handed over, a SECURITY DEFINER one would run as pgask_owner for
    -- whoever its creator let execute it. (public.rag_answer is replaced by the install,
    -- whoever made it first, and handed over as before.)
    FOR object IN
        SELECT p.oid::regprocedure::text AS name, p.proowner::regrole::text AS owner
        FROM pg_catalog.pg_proc AS p
        INNER JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
        WHERE p.pronamespace IN ('rag'::regnamespace, to_regnamespace('rag_api'))
            AND p.proowner <> 'pgask_owner'::regrole AND NOT r.rolsuper
    LOOP
        RAISE EXCEPTION 'routine % belongs to %: pgask did not create it; check it, drop it '
            'and install again', object.name, object.owner
            USING errcode = 'insufficient_privilege';
    END LOOP;
    FOR object IN
        SELECT
            c.oid::regclass::text AS name,
            CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'rag'::regnamespace
            AND c.relkind = ANY ('{r,p,v,m,S}'::"char"[])
            AND c.relowner <> 'pgask_owner'::regrole
            -- (a sequence owned by a column goes with its table)
            AND NOT EXISTS (
                SELECT FROM pg_catalog.pg_depend AS d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = ANY ('{a,i}'::"char"[])
                    AND d.refclassid = 'pg_class'::regclass
            )
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO pgask_owner', object.kind, object.name);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure::text AS name
        FROM pg_catalog.pg_proc AS p
        WHERE (p.pronamespace IN ('rag'::regnamespace, to_regnamespace('rag_api'))
            OR p.oid = to_regprocedure('public.rag_answer(text)'))
            AND p.proowner <> 'pgask_owner'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO pgask_owner', object.name);
    END LOOP;
END;
$$;

SELECT rag._take_ownership();
