"""`pgask uninstall` removes what pgask created and leaves the user's tables and rows alone."""

from __future__ import annotations

import psycopg
import pytest
from commands import pgask
from fix_cluster import Cluster

from fix_db import add_document
from pgask.install import InstallError, install
from pgask.uninstall import CREATED_ROLES, plan, uninstall


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


def test_uninstall_drops_its_roles_with_their_privileges_here(used_db):
    """Roles nothing outside this database uses go, once what they were granted here (on the
    user's own tables too) is revoked: DROP OWNED BY, which acts on this database only."""
    roles = ("pgask_test_granted_rag", "pgask_test_granted_notes")
    used_db.execute(f"CREATE ROLE {roles[0]} NOLOGIN")
    used_db.execute(f"GRANT USAGE ON SCHEMA rag TO {roles[0]}")
    used_db.execute(f"CREATE ROLE {roles[1]} NOLOGIN")
    used_db.execute(f"GRANT SELECT ON public.notes TO {roles[1]}")
    try:
        removed = uninstall(used_db, roles=roles)
        assert removed.roles == sorted(roles) and removed.kept_roles == {}
        assert _existing(used_db, roles) == []
        assert used_db.execute("SELECT count(*) FROM public.notes").fetchone() == (2,)
    finally:
        for role in roles:
            used_db.execute(f"DROP ROLE IF EXISTS {role}")


def test_uninstall_keeps_every_role_while_another_database_uses_one(used_db, empty_db_url):
    """pgask in another database uses all its roles, some only by name in a policy that
    pg_shdepend does not record: one of them used elsewhere keeps them all."""
    roles = ("pgask_test_only_here", "pgask_test_used_elsewhere")
    for role in roles:
        used_db.execute(f"CREATE ROLE {role} NOLOGIN")
        used_db.execute(f"GRANT USAGE ON SCHEMA rag TO {role}")
    with psycopg.connect(empty_db_url, autocommit=True) as other:
        other.execute("CREATE TABLE elsewhere (id int)")
        other.execute(f"GRANT SELECT ON elsewhere TO {roles[1]}")
    try:
        found = plan(used_db.cursor(), roles=roles)
        assert "kept: role pgask_test_only_here, used in database pgask_empty" in found.describe()
        removed = uninstall(used_db, roles=roles)
        assert removed.roles == sorted(roles)
        assert removed.kept_roles == {role: "used in database pgask_empty" for role in roles}
        assert _existing(used_db, roles) == sorted(roles)
        assert used_db.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as other:
            other.execute("DROP TABLE elsewhere")
        for role in roles:
            used_db.execute(f"DROP OWNED BY {role}")
            used_db.execute(f"DROP ROLE IF EXISTS {role}")


def test_uninstall_refuses_when_a_pgask_role_owns_a_table_of_the_user(used_db):
    """Dropping the role would drop the table and its rows with it (DROP OWNED BY)."""
    role = "pgask_test_owner_of_notes"
    used_db.execute(f"CREATE ROLE {role} NOLOGIN")
    used_db.execute(f"ALTER TABLE public.notes OWNER TO {role}")
    try:
        with pytest.raises(InstallError, match=r"owned by a pgask role.*table notes.*OWNER TO"):
            uninstall(used_db, roles=(role,))
        assert used_db.execute("SELECT to_regnamespace('rag') IS NOT NULL").fetchone() == (True,)
    finally:
        used_db.execute("ALTER TABLE public.notes OWNER TO CURRENT_USER")
        used_db.execute(f"DROP ROLE {role}")


def _existing(conn: psycopg.Connection, roles) -> list[str]:
    return [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)"
                                       " ORDER BY 1", (list(roles),))]


@pytest.fixture
def server(tmp_path):
    """A server of this test's own: on the shared one, the template and every other test's
    database have pgask installed, so no uninstall there is ever the last."""
    cluster = Cluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


def test_uninstall_from_one_of_two_databases_keeps_the_roles_the_other_uses(server):
    first, second = server.create_database("first"), server.create_database("second")
    for url in (first, second):
        installed = pgask("install", database_url=url)
        assert installed.returncode == 0, installed.stderr
    with psycopg.connect(second, autocommit=True) as conn:
        roles = _existing(conn, CREATED_ROLES)
        assert {"pgask_reader", "pgask_auditor"} <= set(roles)
        # An auditor of the second database: a login role granted pgask_auditor, not the owner.
        conn.execute("CREATE ROLE analyst LOGIN")
        conn.execute("SELECT rag.grant_usage('analyst', 'auditor')")
        conn.execute("SELECT rag.answer('What is pgask?', model => 'extractive')")

    done = pgask("uninstall", "--yes", database_url=first)
    assert done.returncode == 0, done.stderr
    # The second database's pgask still works for its non-superuser auditor: its policies
    # name pgask_auditor, so dropping that role would break every query of the log's views.
    with psycopg.connect(server.url("second").replace("postgres@", "analyst@")) as conn:
        assert conn.execute("SELECT sum(answers) FROM rag.answers_daily").fetchone() == (1,)
    with psycopg.connect(first, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)
        assert _existing(conn, CREATED_ROLES) == roles
    for role in roles:
        assert f"role {role} kept: used in database second\n" in done.stdout, done.stdout
    assert "`pgask uninstall` in the last database using them drops them" in done.stdout

    last = pgask("uninstall", "--yes", database_url=second)
    assert last.returncode == 0, last.stderr
    assert "kept" not in last.stdout.replace("kept: your tables", "")
    with psycopg.connect(second, autocommit=True) as conn:
        assert _existing(conn, CREATED_ROLES) == []
        conn.execute("DROP ROLE analyst")
