"""A real PostgreSQL 15 with pgvector and PL/Python, and pgask installed, for the tests.

By default pytest-postgresql starts a throwaway cluster; each test gets a fresh database
cloned from a template that has pgask installed. Set PGASK_TEST_DSN to run against an existing
server instead (it needs pgvector, plpython3u and pgask's site directory, see `make setup`).
The server imports this checkout's pgask (PGASK_PYTHONPATH), not the installed copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from pytest_postgresql import factories

from pgask.install import install

REPO = Path(__file__).resolve().parents[1]
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
DSN_ENV = "PGASK_TEST_DSN"

# Read by rag._python_init() in the server, which inherits this process's environment.
os.environ.setdefault("PGASK_PYTHONPATH", str(REPO / "python" / "src"))


def install_pgask(**connect_kwargs) -> None:
    with psycopg.connect(**connect_kwargs) as conn:
        install(conn)


if os.environ.get(DSN_ENV):
    _params = conninfo_to_dict(os.environ[DSN_ENV])
    postgresql_proc = factories.postgresql_noproc(
        host=_params.get("host", "127.0.0.1"), port=int(_params.get("port", 5432)),
        user=_params.get("user", "postgres"), password=_params.get("password"),
        dbname=_params.get("dbname", "pgask_test"), load=[install_pgask],
    )
else:
    postgresql_proc = factories.postgresql_proc(
        executable=PG_CTL, port=None, dbname="pgask_test", load=[install_pgask],
        postgres_options="-c shared_buffers=128MB -c fsync=off -c max_prepared_transactions=10",
    )

postgresql = factories.postgresql("postgresql_proc")


@pytest.fixture
def db(postgresql) -> psycopg.Connection:
    """An autocommit connection to a fresh database with pgask installed."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def db_url(postgresql) -> str:
    """The fresh database's connection string, for code that opens its own connections."""
    info = postgresql.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture
def empty_db_url(postgresql_proc) -> str:
    """A database without pgask, created for one test and dropped after it."""
    name = "pgask_empty"
    base = (f"postgresql://{postgresql_proc.user}@{postgresql_proc.host}:"
            f"{postgresql_proc.port}")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_document(conn: psycopg.Connection, source: str, content: str, title: str = "") -> int:
    """Inserts a document (the trigger chunks and embeds it) and returns its id."""
    (document_id,) = conn.execute(
        "INSERT INTO rag.documents (source, title, content) VALUES (%s, %s, %s) RETURNING id",
        (source, title, content),
    ).fetchone()
    return document_id
