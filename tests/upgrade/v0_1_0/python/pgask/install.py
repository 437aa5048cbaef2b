"""`pgask install`: applies migrations (once, checksummed) and the idempotent sql/ files.

Migrations create tables and are recorded in rag.migrations with their sha256; a migration
that was edited after it was applied is refused. The sql/ files hold CREATE OR REPLACE
functions and views and are re-applied on every install. Everything runs in one transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pgask import __version__

# The sql/ files in dependency order: SQL-language bodies are checked when created.
SQL_FILES = ("python.sql", "chunking.sql", "loading.sql", "embedding.sql", "pipelines.sql",
             "documents.sql", "retrieval.sql", "answering.sql", "evaluation.sql")
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


def install(conn: psycopg.Connection, site_dir: str = DEFAULT_SITE_DIR) -> InstallReport:
    """Installs or upgrades pgask in the connected database, atomically."""
    root = project_root()
    missing = [name for name in SQL_FILES if not (root / "sql" / name).is_file()]
    if missing:
        raise InstallError(f"sql/ is missing {', '.join(missing)}")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK_KEY,))
        _ensure_extensions(cur)
        cur.execute("CREATE SCHEMA IF NOT EXISTS rag")
        applied = _apply_migrations(cur, root)
        # Recorded before the sql/ files run: some of them call PL/Python already.
        cur.execute(
            "INSERT INTO rag.settings (key, value) VALUES ('python_site', %s), ('version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (site_dir, __version__),
        )
        for name in SQL_FILES:
            cur.execute((root / "sql" / name).read_text(encoding="utf-8"))
    return InstallReport(applied, list(SQL_FILES), __version__)
