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
DEFAULT_SITE_DIR = f"/usr/local/lib/pgask/{__version__}"
# Serialises concurrent installs on one database ("pgask" in ASCII).
INSTALL_LOCK_KEY = 0x7067_6173_6B


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
        cur.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
            sql.Identifier(name)))


def sql_files(root: Path) -> list[Path]:
    """The idempotent sql/ files in install order: their NNN_ prefixes sort them (SQL-language
    bodies are checked when created, so what a file uses comes from a lower number)."""
    return sorted((root / "sql").glob("[0-9][0-9][0-9]_*.sql"))


def with_preamble(text: str) -> str:
    """An sql/ file's text with every PL/Python body's marker line replaced by the preamble."""
    return text.replace(PREAMBLE_MARKER, PREAMBLE.format(version=__version__))


def _apply_migrations(cur: psycopg.Cursor, root: Path) -> list[str]:
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
        cur.execute(text)
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
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK_KEY,))
        _refuse_downgrade(cur)
        _ensure_extensions(cur)
        cur.execute("CREATE SCHEMA IF NOT EXISTS rag")
        applied = _apply_migrations(cur, root)
        # Recorded before the sql/ files run: some of them call PL/Python already.
        cur.execute(
            "INSERT INTO rag.settings (key, value) VALUES ('python_site', %s), ('version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (site_dir, __version__),
        )
        for path in files:
            cur.execute(with_preamble(path.read_text(encoding="utf-8")))
    return InstallReport(applied, [path.name for path in files], __version__)
