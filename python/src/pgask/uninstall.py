"""`pgask uninstall`: removes everything pgask created in a database, and nothing else.

What pgask creates: schema `rag` (its tables, views, functions, chunk tables, the documents
table), schema `rag_eval` (corpora loaded by `pgask eval`), `public.rag_answer`, event triggers
and triggers on user tables that call rag functions, and pg_cron jobs named `pgask:*`
(rag.schedule). User tables and their rows stay. The `vector` and `plpython3u` extensions stay
too: user tables may have vector columns, and other code may use PL/Python.

A user view or function that depends on a pgask object would be dropped by the cascade, so
the uninstall refuses and names it instead. Everything runs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgask.install import INSTALL_LOCK_KEY, InstallError, installed_version

# Roles pgask's install creates (sql/990_privileges.sql of the security work). Roles are
# cluster-wide: one still used by another database (pgask installed there too) is kept.
CREATED_ROLES: tuple[str, ...] = ("pgask_reader", "pgask_auditor")

_USER_TRIGGERS = """
SELECT t.tgname, t.tgrelid::regclass::text
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
WHERE p.pronamespace = 'rag'::regnamespace AND NOT t.tgisinternal
  AND c.relnamespace <> 'rag'::regnamespace
ORDER BY 2, 1
"""
_EVENT_TRIGGERS = """
SELECT e.evtname FROM pg_catalog.pg_event_trigger AS e
JOIN pg_catalog.pg_proc AS p ON p.oid = e.evtfoid
WHERE p.pronamespace = 'rag'::regnamespace ORDER BY 1
"""
# Views and functions outside pgask's schemas that use a pgask relation or function.
_DEPENDENTS = """
WITH ours AS (
    SELECT 'pg_catalog.pg_class'::regclass AS classid, oid FROM pg_catalog.pg_class
    WHERE relnamespace = 'rag'::regnamespace
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, oid FROM pg_catalog.pg_proc
    WHERE pronamespace = 'rag'::regnamespace
       OR oid = to_regprocedure('public.rag_answer(text)')
), theirs AS (
    SELECT 'view ' || v.oid::regclass::text AS name, v.relnamespace AS namespace
    FROM pg_catalog.pg_depend AS d
    JOIN ours ON ours.classid = d.refclassid AND ours.oid = d.refobjid
    JOIN pg_catalog.pg_rewrite AS r
        ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
    JOIN pg_catalog.pg_class AS v ON v.oid = r.ev_class
    UNION
    SELECT 'function ' || f.oid::regprocedure::text, f.pronamespace
    FROM pg_catalog.pg_depend AS d
    JOIN ours ON ours.classid = d.refclassid AND ours.oid = d.refobjid
    JOIN pg_catalog.pg_proc AS f
        ON d.classid = 'pg_catalog.pg_proc'::regclass AND f.oid = d.objid
    WHERE f.oid IS DISTINCT FROM to_regprocedure('public.rag_answer(text)')
)
SELECT name FROM theirs
WHERE namespace NOT IN ('rag'::regnamespace, coalesce(to_regnamespace('rag_eval'), 0))
ORDER BY 1
"""


@dataclass
class UninstallPlan:
    version: str | None
    pipelines: list[str] = field(default_factory=list)
    documents: int = 0
    triggers: list[tuple[str, str]] = field(default_factory=list)
    event_triggers: list[str] = field(default_factory=list)
    cron_jobs: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    kept_roles: dict[str, str] = field(default_factory=dict)  # role -> why it stayed
    dependents: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"pgask {self.version or '(version not recorded)'}: will drop"]
        lines.append(f"  schemas {', '.join(self.schemas)} with {len(self.pipelines)} pipelines "
                     f"({', '.join(self.pipelines) or 'none'}), {self.documents} rows of "
                     "rag.documents, every chunk, the answer log and the settings")
        lines.append("  function public.rag_answer(text)")
        for name, table in self.triggers:
            lines.append(f"  trigger {name} on {table} (the table and its rows stay)")
        lines.extend(f"  event trigger {name}" for name in self.event_triggers)
        lines.extend(f"  pg_cron job {name}" for name in self.cron_jobs)
        lines.extend(f"  role {name} (kept if another database still uses it)"
                     for name in self.roles)
        lines.append("kept: your tables and their rows, the vector and plpython3u extensions")
        return "\n".join(lines)


def plan(cur: psycopg.Cursor, roles: tuple[str, ...] = CREATED_ROLES) -> UninstallPlan | None:
    """What an uninstall would drop, or None when pgask is not installed here."""
    cur.execute("SELECT to_regnamespace('rag') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    result = UninstallPlan(version=installed_version(cur))
    cur.execute("SELECT nspname FROM pg_catalog.pg_namespace"
                " WHERE nspname IN ('rag', 'rag_eval') ORDER BY 1")
    result.schemas = [r[0] for r in cur.fetchall()]
    if _exists(cur, "rag.pipelines"):
        cur.execute("SELECT name FROM rag.pipelines ORDER BY name")
        result.pipelines = [r[0] for r in cur.fetchall()]
    if _exists(cur, "rag.documents"):
        cur.execute("SELECT count(*) FROM rag.documents")
        result.documents = cur.fetchone()[0]
    cur.execute(_USER_TRIGGERS)
    result.triggers = [tuple(r) for r in cur.fetchall()]
    cur.execute(_EVENT_TRIGGERS)
    result.event_triggers = [r[0] for r in cur.fetchall()]
    if _exists(cur, "cron.job"):
        cur.execute("SELECT jobname FROM cron.job WHERE jobname LIKE 'pgask:%' ORDER BY 1")
        result.cron_jobs = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
                (list(roles),))
    result.roles = [r[0] for r in cur.fetchall()]
    cur.execute(_DEPENDENTS)
    result.dependents = [r[0] for r in cur.fetchall()]
    return result


def _exists(cur: psycopg.Cursor, relation: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,))
    return cur.fetchone()[0]


def uninstall(conn: psycopg.Connection,
              roles: tuple[str, ...] = CREATED_ROLES) -> UninstallPlan | None:
    """Drops pgask from the connected database, atomically; None if it was not installed."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK_KEY,))
        found = plan(cur, roles)
        if found is None:
            return None
        if found.dependents:
            raise InstallError(
                "these objects of yours use pgask and would be dropped with it: "
                + ", ".join(found.dependents) + ". Drop or change them first, then run "
                "`pgask uninstall` again"
            )
        for name in found.cron_jobs:
            cur.execute("SELECT cron.unschedule(%s)", (name,))
        for name, table in found.triggers:
            cur.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(name), sql.SQL(table)))  # regclass text: already quoted
        for name in found.event_triggers:
            cur.execute(sql.SQL("DROP EVENT TRIGGER {}").format(sql.Identifier(name)))
        cur.execute("DROP FUNCTION IF EXISTS public.rag_answer(text)")
        for schema in found.schemas:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        for role in found.roles:
            try:
                with conn.transaction():  # a savepoint: a role in use elsewhere stays
                    cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            except psycopg.errors.DependentObjectsStillExist as exc:
                found.kept_roles[role] = (exc.diag.message_detail or str(exc)).splitlines()[0]
    return found
