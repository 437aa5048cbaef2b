"""`pgask uninstall` removes what pgask created and leaves the user's tables and rows alone."""

from __future__ import annotations

import psycopg
import pytest
from test_cli import pgask

from fix_db import add_document
from pgask.install import InstallError, install
from pgask.uninstall import uninstall


@pytest.fixture
def used_db(db):
    """A database as a user leaves it: documents, a pipeline over their table, answers."""
    add_document(db, "a.md", "Vacuum reclaims the space of dead rows.", "Vacuum")
    db.execute("CREATE TABLE public.notes (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO public.notes VALUES (1, 'Backups run at midnight.'), (2, 'x')")
    db.execute("SELECT rag.create_pipeline('notes', 'public.notes', 'body')")
    db.execute("CALL rag.process_queue()")
    db.execute("SELECT rag.answer('When do backups run?', model => 'extractive')")
    return db


def _leftovers(conn: psycopg.Connection) -> dict[str, list]:
    queries = {
        "schemas": "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rag%'",
        "functions": "SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE 'rag%'",
        "event_triggers": "SELECT evtname FROM pg_event_trigger",
        "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
    }
    return {name: conn.execute(q).fetchall() for name, q in queries.items()}


def test_uninstall_drops_everything_of_pgask_and_keeps_user_rows(used_db):
    assert _leftovers(used_db)["event_triggers"] and _leftovers(used_db)["triggers"]
    removed = uninstall(used_db)
    assert removed.pipelines == ["documents", "notes"] and removed.documents == 1
    assert {name for name, table in removed.triggers} >= {"pgask_notes_insert"}
    assert _leftovers(used_db) == {"schemas": [], "functions": [], "event_triggers": [],
                                   "triggers": []}
    assert used_db.execute("SELECT * FROM public.notes ORDER BY id").fetchall() == [
        (1, "Backups run at midnight."), (2, "x")]
    # The user's table takes writes again with nothing of pgask in the way.
    used_db.execute("INSERT INTO public.notes VALUES (3, 'after')")
    used_db.execute("TRUNCATE public.notes")
    # The extensions stay (user tables may have vector columns); a reinstall works.
    assert used_db.execute("SELECT count(*) FROM pg_extension"
                           " WHERE extname IN ('vector', 'plpython3u')").fetchone() == (2,)
    assert uninstall(used_db) is None
    install(used_db)
    assert used_db.execute("SELECT count(*) FROM rag.documents").fetchone() == (0,)


def test_uninstall_refuses_when_a_user_view_uses_pgask(used_db):
    used_db.execute("CREATE VIEW public.my_docs AS SELECT title FROM rag.documents")
    with pytest.raises(InstallError, match=r"view my_docs.*Drop or change them first"):
        uninstall(used_db)
    assert used_db.execute("SELECT count(*) FROM rag.documents").fetchone() == (1,)


def test_cli_uninstall_asks_first_and_yes_skips_the_question(used_db, db_url):
    refused = pgask("uninstall", database_url=db_url)
    assert refused.returncode == 1
    assert "confirm with --yes" in refused.stderr
    assert "trigger pgask_notes_insert on notes (the table and its rows stay)" in refused.stdout
    assert used_db.execute("SELECT to_regnamespace('rag') IS NOT NULL").fetchone() == (True,)

    done = pgask("uninstall", "--yes", database_url=db_url)
    assert done.returncode == 0, done.stderr
    assert "pgask removed from database" in done.stdout
    assert used_db.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)
    assert used_db.execute("SELECT count(*) FROM public.notes").fetchone() == (2,)
    again = pgask("uninstall", "--yes", database_url=db_url)
    assert again.returncode == 0 and "not installed" in again.stdout


def test_uninstall_drops_the_roles_it_created_unless_another_database_uses_them(
        used_db, empty_db_url):
    roles = ("pgask_test_only_here", "pgask_test_used_elsewhere")
    for role in roles:
        used_db.execute(f"CREATE ROLE {role} NOLOGIN")
        used_db.execute(f"GRANT USAGE ON SCHEMA rag TO {role}")
    with psycopg.connect(empty_db_url, autocommit=True) as other:
        other.execute("CREATE TABLE elsewhere (id int)")
        other.execute(f"GRANT SELECT ON elsewhere TO {roles[1]}")
    try:
        removed = uninstall(used_db, roles=roles)
        assert removed.roles == sorted(roles)
        assert list(removed.kept_roles) == [roles[1]]
        assert "in database pgask_empty" in removed.kept_roles[roles[1]]
        existing = used_db.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                   (list(roles),)).fetchall()
        assert existing == [(roles[1],)]
        assert used_db.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as other:
            other.execute("DROP TABLE elsewhere")
        for role in roles:
            used_db.execute(f"DROP ROLE IF EXISTS {role}")
