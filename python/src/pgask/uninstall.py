"""`pgask uninstall`: removes everything pgask created in a database, and nothing else.

What pgask creates: schema `rag` (its tables, views, functions, chunk tables, the documents
table), schema `rag_source` (the capture functions of source tables, where an install has it),
schema `rag_eval` (corpora loaded by `pgask eval`), `public.rag_answer`, event triggers and
triggers on user tables that call pgask functions, pg_cron jobs named `pgask:*` (rag.schedule),
and the NOLOGIN roles in CREATED_ROLES. User tables and their rows stay. The `vector` and
`plpython3u` extensions stay too: user tables may have vector columns, and other code may use
PL/Python.

Roles are the one thing pgask creates that is not inside the database: every database of the
server shares them. An uninstall removes pgask from the connected database only, so it drops
the roles only when no other database uses any of them (see _roles_used_elsewhere); otherwise
it keeps them and names the databases that still use them. A role it drops first loses its
privileges here (DROP OWNED BY, which touches this database only).

A user view or function that depends on a pgask object would be dropped by the cascade, and
an object of the user's owned by a pgask role would be dropped with the role, so the uninstall
refuses and names them instead. Everything runs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgask.install import InstallError, installed_version, take_install_lock

# Roles pgask's install creates (sql/990_privileges.sql; pgask_owner owns schema rag and
# rag_source). Roles are cluster-wide: they are kept while another database uses them.
CREATED_ROLES: tuple[str, ...] = ("pgask_reader", "pgask_auditor", "pgask_dashboard",
                                   "pgask_admin", "pgask_worker", "pgask_owner")

# pgask's schemas. rag_eval holds data pgask loaded, never code that user objects call.
SCHEMAS: tuple[str, ...] = ("rag", "rag_api", "rag_eval", "rag_source")
# rag_api is pgask's only when pgask_owner owns it (every install makes it so, and refuses one
# of another role): a database whose pgask predates it may have a user's own schema of that
# name, which is neither dropped nor searched for pgask's triggers.
_OURS = "(nspname <> 'rag_api' OR nspowner = to_regrole('pgask_owner'))"
_CODE_SCHEMAS = ("SELECT oid FROM pg_catalog.pg_namespace"
                 " WHERE nspname IN ('rag', 'rag_api', 'rag_source') AND " + _OURS)

_USER_TRIGGERS = f"""
SELECT t.tgname, t.tgrelid::regclass::text
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
WHERE p.pronamespace IN ({_CODE_SCHEMAS}) AND NOT t.tgisinternal
  AND c.relnamespace NOT IN ({_CODE_SCHEMAS})
ORDER BY 2, 1
"""
_EVENT_TRIGGERS = f"""
SELECT e.evtname FROM pg_catalog.pg_event_trigger AS e
JOIN pg_catalog.pg_proc AS p ON p.oid = e.evtfoid
WHERE p.pronamespace IN ({_CODE_SCHEMAS}) ORDER BY 1
"""
# Views and functions outside pgask's schemas that use a pgask relation or function.
_DEPENDENTS = f"""
WITH ours AS (
    SELECT 'pg_catalog.pg_class'::regclass AS classid, oid FROM pg_catalog.pg_class
    WHERE relnamespace IN ({_CODE_SCHEMAS})
    UNION ALL
    SELECT 'pg_catalog.pg_proc'::regclass, oid FROM pg_catalog.pg_proc
    WHERE pronamespace IN ({_CODE_SCHEMAS})
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
WHERE namespace NOT IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)
    AND """ + _OURS + """)
ORDER BY 1
"""
# What pg_shdepend records of the roles outside this database: grants, policies and ownership
# in another database (dbid: that database), and ownership of shared objects such as a
# database or a tablespace (dbid 0). It cannot record a role named in an expression: pgask's
# policies call pg_has_role('pgask_auditor', ...), so a database with pgask installed uses
# pgask_auditor without a row here (see _roles_used_elsewhere).
_USED_ELSEWHERE = """
SELECT r.rolname, db.datname,
       CASE WHEN d.dbid = 0 THEN
           CASE WHEN d.deptype = 'o' THEN 'owner of ' ELSE '' END
           || pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
       END AS shared_object
FROM pg_catalog.pg_shdepend AS d
JOIN pg_catalog.pg_roles AS r ON r.oid = d.refobjid
LEFT JOIN pg_catalog.pg_database AS db ON db.oid = d.dbid
WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND r.rolname = ANY(%(roles)s)
  AND d.dbid <> (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
ORDER BY 1, 2, 3
"""
# Objects in this database owned by the roles, other than pgask's schemas and what is in them
# (and public.rag_answer): DROP OWNED BY would drop them with the role.
_OWNED_HERE = """
SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS name
FROM pg_catalog.pg_shdepend AS d
JOIN pg_catalog.pg_roles AS r ON r.oid = d.refobjid
CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) AS o
WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND r.rolname = ANY(%(roles)s)
  AND d.deptype = 'o'
  AND d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND coalesce(o.schema, '') <> ALL(%(schemas)s)
  AND NOT (o.type = 'schema' AND o.identity = ANY(%(schemas)s))
  AND NOT (d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.objid = to_regprocedure('public.rag_answer(text)'))
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
    roles: list[str] = field(default_factory=list)  # the pgask roles that exist
    kept_roles: dict[str, str] = field(default_factory=dict)  # role -> where it is still used
    dependents: list[str] = field(default_factory=list)
    owned_objects: list[str] = field(default_factory=list)  # the user's, owned by a pgask role

    @property
    def dropped_roles(self) -> list[str]:
        return [role for role in self.roles if role not in self.kept_roles]

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
        lines.extend(f"  role {name}" for name in self.dropped_roles)
        lines.append("kept: your tables and their rows, the vector and plpython3u extensions")
        lines.extend(f"kept: role {name}, {why}" for name, why in self.kept_roles.items())
        return "\n".join(lines)


def plan(cur: psycopg.Cursor, roles: tuple[str, ...] = CREATED_ROLES) -> UninstallPlan | None:
    """What an uninstall would drop, or None when pgask is not installed here."""
    cur.execute("SELECT to_regnamespace('rag') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    result = UninstallPlan(version=installed_version(cur))
    cur.execute("SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)"
                " AND " + _OURS + " ORDER BY 1", (list(SCHEMAS),))
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
    result.kept_roles = _roles_used_elsewhere(cur, tuple(result.roles))
    cur.execute(_DEPENDENTS, (list(SCHEMAS),))
    result.dependents = [r[0] for r in cur.fetchall()]
    cur.execute(_OWNED_HERE, {"roles": result.dropped_roles, "schemas": list(SCHEMAS)})
    result.owned_objects = [r[0] for r in cur.fetchall()]
    return result


def _roles_used_elsewhere(cur: psycopg.Cursor, roles: tuple[str, ...]) -> dict[str, str]:
    """The roles to keep, each with where it is still used outside this database.

    The roles go together: pgask installed in another database uses every one of them, some
    only by name in a policy (pg_has_role('pgask_auditor', ...)), which pg_shdepend does not
    record. So any of them used in another database keeps them all: dropping pgask_auditor
    there would make its policies fail with "role does not exist", and so every query of
    rag.answers_daily by a role other than the owner. A role that owns a shared object (a
    database, say) is kept too: DROP ROLE would refuse."""
    cur.execute(_USED_ELSEWHERE, {"roles": list(roles)})
    rows = cur.fetchall()
    databases = sorted({datname for _, datname, shared in rows if shared is None})
    kept = {}
    for role in roles:
        uses = [f"used in database {name}" for name in databases]
        uses += sorted({shared for name, _, shared in rows if name == role and shared})
        if uses:
            kept[role] = ", ".join(uses)
    return kept


def _exists(cur: psycopg.Cursor, relation: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,))
    return cur.fetchone()[0]


def uninstall(conn: psycopg.Connection,
              roles: tuple[str, ...] = CREATED_ROLES) -> UninstallPlan | None:
    """Drops pgask from the connected database, atomically; None if it was not installed."""
    with conn.transaction(), conn.cursor() as cur:
        take_install_lock(cur)
        found = plan(cur, roles)
        if found is None:
            return None
        if found.dependents:
            raise InstallError(
                "these objects of yours use pgask and would be dropped with it: "
                + ", ".join(found.dependents) + ". Drop or change them first, then run "
                "`pgask uninstall` again"
            )
        if found.owned_objects:
            raise InstallError(
                "these objects are owned by a pgask role and would be dropped with it: "
                + ", ".join(found.owned_objects) + ". Give them another owner (ALTER ... "
                "OWNER TO) or drop them, then run `pgask uninstall` again"
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
        for role in found.dropped_roles:
            _drop_role(conn, cur, role, found)
    return found


def _drop_role(conn: psycopg.Connection, cur: psycopg.Cursor, role: str,
               found: UninstallPlan) -> None:
    """Drops `role` after revoking what it was granted here (DROP OWNED BY acts on this
    database only; what it owned here went with pgask's schemas, and uninstall() refused if
    it owned anything else). In a savepoint: a role this session may not drop, or one another
    database took up since plan(), is kept and reported instead of failing the uninstall."""
    name = sql.Identifier(role)
    try:
        with conn.transaction():
            cur.execute(sql.SQL("DROP OWNED BY {}").format(name))
            cur.execute(sql.SQL("DROP ROLE {}").format(name))
    except (psycopg.errors.DependentObjectsStillExist, psycopg.errors.InsufficientPrivilege,
            psycopg.errors.ObjectInUse) as exc:
        detail = exc.diag.message_detail or exc.diag.message_primary or str(exc)
        found.kept_roles[role] = f"could not drop it: {detail.splitlines()[0]}"
