"""`pgask install`: applies migrations (once, checksummed) and the idempotent sql/ files.

Migrations create tables and are recorded in rag.migrations with their sha256; a migration
that was edited after it was applied is refused. The sql/ files hold CREATE OR REPLACE
functions and views and are re-applied on every install, in the order their numbers give
(NNN_topic.sql). Every PL/Python body starts with the marker line `#PGASK_PREAMBLE`, which
is replaced here by the one preamble that makes the package importable and checks that the
server imports the version being installed. Everything runs in one transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pgask import __version__

PREAMBLE_MARKER = "#PGASK_PREAMBLE\n"
# Cheap on every call (one dict lookup); the import and the version check run once per backend.
PREAMBLE = """\
if GD.get("pgask_version") != "{version}":
    plpy.execute("SELECT rag._python_init()")
    if GD.get("pgask_version") != "{version}":
        plpy.error("pgask: this database has pgask {version} installed, but the server imports "
                   "the pgask Python package %s" % GD.get("pgask_version"),
                   hint="Run `make setup` on the database server for this version, then "
                        "`pgask install`, and reconnect.")
"""
REQUIRED_EXTENSIONS = ("vector", "plpython3u")
# The role that owns schema rag and everything in it, and runs every SECURITY DEFINER
# function: NOSUPERUSER, NOCREATEROLE, NOBYPASSRLS (docs/security.md). Workers and pipeline
# admins are its members; a superuser is needed to install and upgrade, never to run.
OWNER_ROLE = "pgask_owner"
# Who may define pipelines and registries (members: pipeline admins) and who may process the
# queue (members: workers). Neither is a member of OWNER_ROLE, which has no members at all: a
# role that could act as pgask_owner could change code that other roles, superusers
# included, run with their own rights (invoker functions, event trigger functions).
ADMIN_ROLE = "pgask_admin"
WORKER_ROLE = "pgask_worker"
# pgask_owner and pgask_worker act on Citus workers over connections of their own name
# (docs/scale-out.md), so on a Citus coordinator they may log in (no password is set).
ROLES = (OWNER_ROLE, ADMIN_ROLE, WORKER_ROLE)
# The schema of the functions that read a source table as its owner (sql/075_source_binding.sql):
# owned by OWNER_ROLE, with no privilege for anyone else.
SOURCE_SCHEMA = "rag_source"
# The HTTP entry points for PostgREST (sql/170_http_api.sql), and nothing else: owned by
# OWNER_ROLE, USAGE for every role.
API_SCHEMA = "rag_api"
# sql/ texts name pgvector's type and operators in this schema; install writes in the schema
# the extension was created in (sqlfluff sees a plain identifier).
VECTOR_SCHEMA_PLACEHOLDER = "_vector_schema_"
# What the sql/ files run under: no schema that others can CREATE in (docs/security.md).
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"
DEFAULT_SITE_DIR = f"/usr/local/lib/pgask/{__version__}"
# Serialises concurrent installs on one database ("pgask" in ASCII).
INSTALL_LOCK_KEY = 0x7067_6173_6B
# How long an install waits for that lock. Any role may take an advisory lock, so one that
# holds this key is named (its pid) rather than waited for without end.
INSTALL_LOCK_WAIT = "30s"


def _install_lock_key(cur) -> int:
    """INSTALL_LOCK_KEY, salted with rag.private's salt where pgask is installed (only
    pgask_owner and superusers read it): no other role can compute the key to hold it."""
    cur.execute("SELECT pg_catalog.to_regclass('rag.private') IS NOT NULL")
    if not cur.fetchone()[0]:
        return INSTALL_LOCK_KEY
    cur.execute("SELECT pg_catalog.hashtextextended('install', pg_catalog.hashtextextended("
                "p.value, 0)) FROM rag.private AS p WHERE p.key = 'lock_salt'")
    row = cur.fetchone()
    return INSTALL_LOCK_KEY if row is None else row[0]


def take_install_lock(cur) -> None:
    """The install lock of this database, in this transaction; InstallError naming the
    session that holds it when it is not free within INSTALL_LOCK_WAIT."""
    key = _install_lock_key(cur)
    cur.execute("SELECT pg_catalog.current_setting('lock_timeout')")
    (previous,) = cur.fetchone()
    cur.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (INSTALL_LOCK_WAIT,))
    try:
        cur.execute("SAVEPOINT pgask_install_lock")
        cur.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (key,))
    except psycopg.errors.LockNotAvailable:
        cur.execute("ROLLBACK TO SAVEPOINT pgask_install_lock")
        cur.execute(
            "SELECT a.pid, a.usename, a.state FROM pg_catalog.pg_locks AS l"
            " JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s", (key,))
        holders = ", ".join(f"pid {pid} ({user}, {state})" for pid, user, state in cur)
        raise InstallError(
            f"another session holds pgask's install lock of this database ({holders or 'gone'}"
            f"), for more than {INSTALL_LOCK_WAIT}: wait for it, or end it with SELECT "
            "pg_terminate_backend(pid)") from None
    cur.execute("RELEASE SAVEPOINT pgask_install_lock")
    cur.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (previous,))


class InstallError(Exception):
    """The database cannot take this install; the message says why and what to do."""


@dataclass(frozen=True)
class InstallReport:
    applied_migrations: list[str]
    sql_files: list[str]
    version: str


def project_root() -> Path:
    """The checkout (or installed data) that holds sql/ and migrations/."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "sql").is_dir() and (parent / "migrations").is_dir():
            return parent
    raise InstallError(f"cannot find the sql/ and migrations/ folders above {here}")


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ensure_extensions(cur: psycopg.Cursor) -> None:
    for name in REQUIRED_EXTENSIONS:
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,))
        if cur.fetchone() is None:
            package = "pgvector 0.8" if name == "vector" else "postgresql-plpython3-15"
            raise InstallError(
                f"the server has no '{name}' extension: install {package} on the database "
                "server (`make setup` does) and run `pgask install` again"
            )
        # (A search_path pinned to pg_catalog names no schema to create pgvector in: it goes
        # where PostgreSQL puts it by default, public, unless it is installed already.)
        cur.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}{}").format(
            sql.Identifier(name), sql.SQL(" SCHEMA public" if name == "vector" else "")))


def sql_files(root: Path) -> list[Path]:
    """The idempotent sql/ files in install order: their NNN_ prefixes sort them (SQL-language
    bodies are checked when created, so what a file uses comes from a lower number)."""
    return sorted((root / "sql").glob("[0-9][0-9][0-9]_*.sql"))


def with_preamble(text: str, vector_schema: str = "public") -> str:
    """An sql/ file's text with every PL/Python body's marker line replaced by the preamble,
    and pgvector's (quoted) schema written in."""
    return text.replace(PREAMBLE_MARKER, PREAMBLE.format(version=__version__)).replace(
        VECTOR_SCHEMA_PLACEHOLDER, vector_schema)


def _vector_schema(cur: psycopg.Cursor) -> str:
    """The schema of the vector extension, quoted as an identifier."""
    cur.execute("SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension AS e"
                " JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace"
                " WHERE e.extname = 'vector'")
    return cur.fetchone()[0]


# pgvector's names as migrations spell them (never edited once applied): the type with its
# typmod and its operator classes. Written with the extension's schema when a migration runs,
# so no migration resolves a name through a schema that others can create in.
_VECTOR_NAMES = re.compile(r"(?<![\w.\"])(vector(?=\s*\()|vector_(?:cosine|l2|ip)_ops\b)")


def qualify_vector(text: str, vector_schema: str) -> str:
    """A migration's text with pgvector's type and operator classes qualified by its schema
    (comments left as they are)."""
    return "\n".join(
        line if line.lstrip().startswith("--")
        else _VECTOR_NAMES.sub(lambda m: f"{vector_schema}.{m.group(1)}", line)
        for line in text.split("\n"))


def _ensure_roles(cur: psycopg.Cursor) -> None:
    """The owner, admin and worker roles (NOLOGIN, and kept without superuser, role creation
    or row-level-security bypass whoever created them first), pgask_owner without members,
    schema rag and the source-reading schema owned by it. Needs a superuser, as installing
    PL/Python functions does anyway."""
    cur.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
    if not cur.fetchone()[0]:
        raise InstallError(
            "pgask install needs a superuser: it installs PL/Python (an untrusted language) "
            f"and hands everything to the role {OWNER_ROLE}, which runs pgask without one")
    cur.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')")
    citus = cur.fetchone()[0]
    for role in ROLES:
        login = "LOGIN" if citus and role != ADMIN_ROLE else "NOLOGIN"
        cur.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                            " NOBYPASSRLS {}").format(sql.Identifier(role), sql.SQL(login)))
    owner = sql.Identifier(OWNER_ROLE)
    cur.execute("SELECT m.member::regrole::text FROM pg_catalog.pg_auth_members AS m"
                " WHERE m.roleid = %s::regrole", (OWNER_ROLE,))
    for (member,) in cur.fetchall():
        cur.execute(sql.SQL("REVOKE {} FROM {}").format(owner, sql.SQL(member)))
    for schema in ("rag", SOURCE_SCHEMA, API_SCHEMA):
        _refuse_planted_schema(cur, schema)
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), owner))
    # Nobody but the owner creates in rag or rag_api (rag_source: the owners of source tables,
    # during a loan, sql/075_source_binding.sql), whatever was granted there before.
    for schema in ("rag", API_SCHEMA):
        cur.execute("SELECT DISTINCT a.grantee FROM pg_catalog.pg_namespace AS n,"
                    " LATERAL pg_catalog.aclexplode(n.nspacl) AS a"
                    " WHERE n.nspname = %s AND a.privilege_type = 'CREATE'"
                    " AND a.grantee <> n.nspowner", (schema,))
        for (grantee,) in cur.fetchall():
            cur.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(
                sql.Identifier(schema),
                sql.SQL("PUBLIC") if grantee == 0 else sql.SQL(_role_name(cur, grantee))))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(
        sql.Identifier(SOURCE_SCHEMA)))
    cur.execute(sql.SQL("GRANT ALL ON SCHEMA {} TO {}").format(
        sql.Identifier(SOURCE_SCHEMA), owner))


def _role_name(cur: psycopg.Cursor, oid: int) -> str:
    cur.execute("SELECT %s::oid::regrole::text", (oid,))
    return cur.fetchone()[0]


def _refuse_planted_schema(cur: psycopg.Cursor, schema: str) -> None:
    """Refuses a schema of pgask's that exists but that pgask did not make: one belonging to
    a role that is neither OWNER_ROLE nor a superuser. A role that may create schemas could
    otherwise create one before the install (rag_api is new in 0.x upgrades) with routines
    in it, which the install would hand to OWNER_ROLE (rag._take_ownership): a SECURITY
    DEFINER one then runs as pgask's owner for whoever she let execute it."""
    cur.execute("SELECT n.nspowner::regrole::text FROM pg_catalog.pg_namespace AS n"
                " JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner"
                " WHERE n.nspname = %s AND n.nspowner <> %s::regrole AND NOT r.rolsuper",
                (schema, OWNER_ROLE))
    row = cur.fetchone()
    if row is not None:
        raise InstallError(
            f"schema {schema} exists and belongs to {row[0]}, not to {OWNER_ROLE} or a "
            "superuser: pgask did not create it, and would hand what is in it to "
            f"{OWNER_ROLE}. Check what it holds, then drop it (DROP SCHEMA {schema} CASCADE) "
            "and install again")


def _apply_migrations(cur: psycopg.Cursor, root: Path, vector_schema: str) -> list[str]:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS rag.migrations ("
        " name text PRIMARY KEY, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT name, checksum FROM rag.migrations")
    recorded = dict(cur.fetchall())
    applied = []
    for path in sorted((root / "migrations").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        digest = checksum(text)
        if path.name in recorded:
            if recorded[path.name] != digest:
                raise InstallError(
                    f"migration {path.name} was changed after it was applied "
                    f"(recorded sha256 {recorded[path.name][:12]}..., file now {digest[:12]}...): "
                    "migrations are never edited once applied; put the change in a new migration"
                )
            continue
        cur.execute(qualify_vector(text, vector_schema))
        cur.execute("INSERT INTO rag.migrations (name, checksum) VALUES (%s, %s)",
                    (path.name, digest))
        applied.append(path.name)
    return applied


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string ("0.2.0" -> (0, 2, 0)), for comparisons.

    Only the release segment counts: pgask versions are plain X.Y.Z, and the PL/Python site
    directory has no `packaging` to parse anything richer.
    """
    numbers = []
    for part in version.split("."):
        digits = part[:len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        numbers.append(int(digits))
        if digits != part:  # "3rc1": a pre-release of 3 ends the release segment
            break
    return tuple(numbers)


def installed_version(cur: psycopg.Cursor) -> str | None:
    """The version recorded by the last `pgask install` in this database, if any."""
    cur.execute("SELECT to_regclass('rag.settings') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT value FROM rag.settings WHERE key = 'version'")
    row = cur.fetchone()
    return row[0] if row else None


def _refuse_downgrade(cur: psycopg.Cursor) -> None:
    recorded = installed_version(cur)
    if recorded is not None and release(recorded) > release(__version__):
        raise InstallError(
            f"this database has pgask {recorded}, newer than this package ({__version__}): "
            "a downgrade would run old functions over tables they do not know. Install pgask "
            f"{recorded} or newer (and its site directory), or restore a backup taken before "
            "the upgrade"
        )


def install(conn: psycopg.Connection, site_dir: str = DEFAULT_SITE_DIR) -> InstallReport:
    """Installs or upgrades pgask in the connected database, atomically.

    Refuses a downgrade: a database whose recorded version is newer than this package.
    """
    root = project_root()
    files = sql_files(root)
    if not files:
        raise InstallError(f"{root / 'sql'} holds no NNN_*.sql files")
    with conn.transaction(), conn.cursor() as cur:
        # The roles in a transaction of their own: with Citus, pgask_owner's DDL reaches the
        # workers over connections as pgask_owner, which must exist there already (Citus
        # creates it on the workers when this commits). A role left by a failed install is
        # harmless.
        cur.execute("SELECT pg_catalog.set_config('search_path', %s, true)",
                    (PINNED_SEARCH_PATH,))
        for role in ROLES:
            cur.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    with conn.transaction(), conn.cursor() as cur:
        # Before anything else: no name below resolves through the connection's search_path
        # (a role with CREATE on public could plant closer-matching operators and functions).
        cur.execute("SELECT pg_catalog.set_config('search_path', %s, true)",
                    (PINNED_SEARCH_PATH,))
        take_install_lock(cur)
        _refuse_downgrade(cur)
        _ensure_extensions(cur)
        vector_schema = _vector_schema(cur)
        _ensure_roles(cur)
        applied = _apply_migrations(cur, root, vector_schema)
        # Recorded before the sql/ files run: some of them call PL/Python already.
        cur.execute(
            "INSERT INTO rag.settings (key, value) VALUES ('python_site', %s), ('version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (site_dir, __version__),
        )
        for path in files:
            cur.execute(with_preamble(path.read_text(encoding="utf-8"), vector_schema))
    return InstallReport(applied, [path.name for path in files], __version__)
