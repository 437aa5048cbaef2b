"""`pgask doctor` and the command line's help, run as a user would (subprocesses)."""

from __future__ import annotations

import pytest
from test_cli import pgask

from pgask import __version__
from pgask.cli import build_parser


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


def test_every_subcommand_explains_itself_and_each_argument():
    for name, sub in _subcommands().items():
        assert len(sub.description or "") > 40, f"pgask {name} --help has no description"
        unexplained = [a.dest for a in sub._actions if a.dest != "help" and not a.help]
        assert not unexplained, f"pgask {name}: arguments without help: {unexplained}"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_help_runs_for_every_subcommand(command):
    result = pgask(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: pgask {command}")
    assert _subcommands()[command].description.split()[0] in result.stdout


def test_top_level_help_lists_every_command_and_a_first_session():
    result = pgask("--help")
    assert result.returncode == 0
    for command in _subcommands():
        assert f"    {command}" in result.stdout
    assert "pgask doctor" in result.stdout and "A first session" in result.stdout
    assert pgask("--version").stdout.strip() == f"pgask {__version__}"


def test_doctor_passes_on_a_ready_database(db_url):
    result = pgask("doctor", database_url=db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("PostgreSQL", "vector", "plpython3u", "pgask schema", "site directory",
                 "Python package", "model"):
        assert f"ok   {name}: " in result.stdout
    assert f"pgask schema: version {__version__}" in result.stdout
    assert "model: the local model embeds (384 dimensions)" in result.stdout
    assert "all checks passed" in result.stdout


def test_doctor_says_how_to_fix_a_database_without_pgask(empty_db_url):
    result = pgask("doctor", database_url=empty_db_url)
    assert result.returncode == 1
    assert "FAIL pgask schema: pgask is not installed in database pgask_empty\n" \
           "     fix: run `pgask install`" in result.stdout
    assert "ok   vector: available" in result.stdout


def test_doctor_finds_an_old_schema_and_a_missing_site_directory(db, db_url):
    db.execute("UPDATE rag.settings SET value = '0.0.1' WHERE key = 'version'")
    db.execute("UPDATE rag.settings SET value = '/nonexistent/pgask' WHERE key = 'python_site'")
    # The backend must load the model itself: a shared model process still running from an
    # earlier test (started with a good path) would embed for it without those libraries.
    db.execute("INSERT INTO rag.settings (key, value) VALUES ('embedding_service', 'off')"
               " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
    result = pgask("doctor", database_url=db_url)
    assert result.returncode == 1
    assert f"FAIL pgask schema: the database has pgask 0.0.1, this command is {__version__}\n" \
           "     fix: run `pgask install` to upgrade the database" in result.stdout
    assert "FAIL site directory: /nonexistent/pgask does not exist on the server\n" \
           "     fix: run `make setup` on the database server" in result.stdout
    # Without the site directory the server cannot import the model's libraries either (the
    # tests' PGASK_PYTHONPATH supplies pgask itself, not its dependencies).
    assert "FAIL model: ModuleNotFoundError" in result.stdout
    assert "3 problem(s): pgask schema, site directory, model" in result.stdout


def test_doctor_on_an_unreachable_server_says_what_to_do():
    result = pgask("doctor", database_url="postgresql://nobody@127.0.0.1:1/nothing")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "Traceback" not in result.stderr
