"""pgask install: idempotent, atomic, and strict about edited migrations."""

from pathlib import Path

import psycopg
import pytest

from pgask import install as install_module
from pgask.install import InstallError, install, project_root, sql_files


def test_every_sql_file_is_installed_in_numbered_order():
    on_disk = sorted(p.name for p in (project_root() / "sql").glob("*.sql"))
    installed = [p.name for p in sql_files(project_root())]
    assert installed == on_disk  # no file without its NNN_ prefix is left out
    assert installed[0].startswith("000_") and len(installed) > 10


def test_every_plpython_body_gets_the_preamble():
    # Each PL/Python function but rag._python_init itself starts with the marker that install
    # replaces; one without it would not find the pgask package in a fresh backend.
    for path in sql_files(project_root()):
        text = path.read_text()
        bodies = text.split("LANGUAGE plpython3u")[1:]
        for body in bodies:
            code = body.split("$$")[1]
            if "def " in code or "GD[\"pgask_version\"] = " in code:
                continue  # rag._python_init
            assert code.lstrip("\n").startswith("#PGASK_PREAMBLE\n"), (path.name, code[:80])


def test_install_twice_applies_migrations_once(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        first = install(conn)
        second = install(conn)
        migrations = conn.execute("SELECT name FROM rag.migrations ORDER BY name").fetchall()
        (version,) = conn.execute("SELECT rag._python_init()").fetchone()
    expected = sorted(p.name for p in (project_root() / "migrations").glob("*.sql"))
    assert first.applied_migrations == expected
    assert second.applied_migrations == []
    assert [m[0] for m in migrations] == expected
    assert version == first.version


def test_install_keeps_data(db):
    db.execute("INSERT INTO rag.settings (key, value) VALUES ('kept', 'yes')")
    install(db)
    assert db.execute("SELECT value FROM rag.settings WHERE key = 'kept'").fetchone() == ("yes",)


def test_edited_migration_is_refused(db):
    db.execute("UPDATE rag.migrations SET checksum = repeat('0', 64)"
               " WHERE name = '0001_foundation.sql'")
    with pytest.raises(InstallError, match=r"migration 0001_foundation\.sql was changed after it "
                       r"was applied .*put the change in a new migration"):
        install(db)


def test_missing_extension_is_a_clear_error_and_writes_nothing(empty_db_url, monkeypatch):
    monkeypatch.setattr(install_module, "REQUIRED_EXTENSIONS", ("vector", "pgask_no_such_ext"))
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        with pytest.raises(InstallError, match="the server has no 'pgask_no_such_ext' extension"):
            install(conn)
        # One transaction: the vector extension created before the failure is rolled back too.
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"
                            ).fetchone() == (0,)
        assert conn.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)


def test_failing_sql_file_rolls_back_everything(empty_db_url, monkeypatch, tmp_path):
    # A copy of the project whose last sql/ file is broken: the migrations before it must not
    # stay applied.
    for folder in ("sql", "migrations"):
        (tmp_path / folder).mkdir()
        for path in (project_root() / folder).glob("*.sql"):
            (tmp_path / folder / path.name).write_text(path.read_text())
    (tmp_path / "sql" / sql_files(project_root())[-1].name).write_text(
        "SELECT no_such_function();")
    monkeypatch.setattr(install_module, "project_root", lambda: Path(tmp_path))
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            install(conn)
        assert conn.execute("SELECT to_regnamespace('rag')").fetchone() == (None,)


def test_a_reinstall_takes_no_table_lock_that_stops_reads_or_writes(db):
    """Sessions read and write pgask's tables and the sources while an upgrade runs. A lock
    that conflicts with theirs, held to the end of the install, queues them behind it, and
    deadlocked a search that held a table the install wanted while it waited for a view the
    install had replaced (re-created policies and triggers did that)."""
    from fix_db import add_document

    add_document(db, "vacuum.md", "VACUUM reclaims storage occupied by dead tuples.")
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
    db.execute("INSERT INTO notes VALUES (1, 'Autovacuum is behind.')")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    install(db)  # whatever a first install of this version changes
    with db.transaction():
        install(db)
        held = db.execute(
            "SELECT l.relation::regclass::text, l.mode FROM pg_locks AS l"
            " JOIN pg_class AS c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'"
            " AND c.relkind IN ('r', 'p') AND c.relnamespace <> 'pg_catalog'::regnamespace"
            " AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock',"
            " 'ShareUpdateExclusiveLock') ORDER BY 1, 2").fetchall()
    assert held == []


def test_reinstall_while_sessions_search_and_answer(db, db_url):
    """An upgrade re-creates every function while applications keep querying. (A PL/Python
    set-returning function replaced under a running session crashed its backend, and with it
    every connection: rag.search's implementation returns JSON for that reason.)"""
    import threading
    import time

    from fix_db import add_document

    add_document(db, "vacuum.md", "VACUUM reclaims storage occupied by dead tuples.")
    errors: list[BaseException] = []
    stop = threading.Event()

    def query_until_stopped():
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT rag.answer('What does VACUUM reclaim?')").fetchone()
                while not stop.is_set():
                    conn.execute("SELECT * FROM rag.search('dead tuples', 3)").fetchall()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=query_until_stopped)
    worker.start()
    time.sleep(1)  # the model is loaded: the loop is searching when install starts
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for _ in range(3):
                install(conn)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert errors == []
    assert db.execute("SELECT count(*) FROM rag.search('dead tuples', 3)").fetchone() == (1,)
