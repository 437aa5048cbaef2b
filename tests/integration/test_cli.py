"""The pgask command, run as a user would: a subprocess against a real database."""

from pathlib import Path

import pytest
from commands import REPO, pgask
from fix_openai import free_port


@pytest.mark.parametrize("command", [[], ["db"], ["install"], ["ingest"], ["ask"]])
def test_help_explains_every_command(command):
    result = pgask(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(" ".join(["usage: pgask", *command]) + " ")


def test_help_says_how_to_name_the_database():
    assert "DATABASE_URL" in pgask("--help").stdout


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "vacuum.md").write_text(
        "# VACUUM\n\nVACUUM reclaims storage occupied by dead tuples. Run it after large "
        "deletes so the space can be reused.\n")
    (folder / "sub" / "indexes.txt").write_text(
        "A multicolumn index is created with CREATE INDEX idx ON orders (customer_id, day).\n")
    (folder / "page.html").write_text(
        "<html><head><title>GIN indexes</title></head><body><h1>GIN</h1>"
        "<p>A GIN index makes full text search with tsvector columns fast.</p></body></html>")
    (folder / "nul.txt").write_bytes(b"text with a \x00 NUL byte")
    (folder / "latin1.md").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")  # not a supported suffix: not listed
    return folder


def test_ingest_reports_bad_files_and_loads_the_rest(db, db_url, docs):
    result = pgask("ingest", "--quiet", str(docs), database_url=db_url)
    assert result.returncode == 1, result.stderr
    assert "3 added, 0 updated, 0 unchanged, 2 skipped" in result.stdout
    assert "nul.txt" in result.stderr and "binary" in result.stderr
    assert "latin1.md" in result.stderr and "UTF-8" in result.stderr
    sources = {row[0] for row in db.execute("SELECT source FROM rag.documents")}
    assert {Path(s).name for s in sources} == {"vacuum.md", "indexes.txt", "page.html"}
    (titles,) = db.execute("SELECT array_agg(title ORDER BY title) FROM rag.documents").fetchone()
    assert titles == ["GIN indexes", "VACUUM", "indexes"]


def test_progress_in_a_log_is_whole_lines(db, db_url, docs):
    # stderr is a pipe here, as in a log: no bar redraws, one line at the end of the run.
    for name in ("nul.txt", "latin1.md"):
        (docs / name).unlink()
    result = pgask("ingest", str(docs), database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("ingest: ")]
    assert len(progress) == 1 and progress[0].startswith("ingest: 3/3 files (100%)"), \
        result.stderr


def test_second_ingest_is_a_no_op_and_changes_are_picked_up(db, db_url, docs):
    for name in ("nul.txt", "latin1.md"):
        (docs / name).unlink()
    assert pgask("ingest", "-q", str(docs), database_url=db_url).returncode == 0
    all_chunk_ids = "SELECT array_agg(id ORDER BY id) FROM rag.documents_chunks"
    chunk_ids = db.execute(all_chunk_ids).fetchone()
    again = pgask("ingest", "-q", str(docs), database_url=db_url)
    assert again.returncode == 0
    assert "0 added, 0 updated, 3 unchanged, 0 skipped; 0 chunks written" in again.stdout
    assert db.execute(all_chunk_ids).fetchone() == chunk_ids
    (docs / "vacuum.md").write_text("# VACUUM\n\nVACUUM FULL rewrites the whole table.\n")
    changed = pgask("ingest", "-q", str(docs), database_url=db_url)
    assert "0 added, 1 updated, 2 unchanged" in changed.stdout


def test_ask_prints_a_cited_answer(db, db_url, docs):
    (docs / "nul.txt").unlink()
    pgask("ingest", "-q", str(docs), database_url=db_url)
    result = pgask("ask", "How do I create an index on two columns?", database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert "CREATE INDEX idx ON orders (customer_id, day). [1]" in result.stdout
    assert "Sources:\n  [1] indexes (" in result.stdout


def test_ask_bad_input_is_one_clear_line(db, db_url):
    result = pgask("ask", "", database_url=db_url)
    assert result.returncode == 1
    assert result.stderr.strip() == ("pgask ask: rag.answer: question must be a non-empty text, "
                                     "got ''")
    result = pgask("ask", "-k", "0", "question", database_url=db_url)
    assert result.stderr.strip() == "pgask ask: rag.answer: k must be between 1 and 50, got 0"


def test_unreachable_database_says_what_to_do():
    result = pgask("ask", "anything", database_url="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "cannot connect to" in result.stderr
    assert "pgask db start" in result.stderr and "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["ask", "anything"], ["ingest", str(REPO / "README.md")],
                                     # (--corpus-root: any folder; the runbooks beside
                                     # the checkout need not be there)
                                     ["eval", "--dataset", str(REPO / "tests/data/runbooks"),
                                      "--corpus-root", str(REPO / "tests/data"), "-q"]])
def test_a_database_without_pgask_says_to_install_it(empty_db_url, command):
    result = pgask(*command, database_url=empty_db_url)
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"pgask {command[0]}: pgask is not installed in this database (")
    assert line.endswith("run `pgask install` first")


def test_install_is_idempotent_from_the_cli(db_url):
    first = pgask("install", database_url=db_url)
    assert first.returncode == 0, first.stderr
    assert "migrations applied: none (already applied)" in first.stdout


def test_db_lifecycle(tmp_path):
    env = {"PGASK_HOME": str(tmp_path / "cluster"), "PGASK_PORT": str(free_port())}
    try:
        started = pgask("db", "start", env_extra=env)
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("started: postgresql://postgres@127.0.0.1:")
        again = pgask("db", "start", env_extra=env)
        assert again.stdout.startswith("already running: ")
        url = pgask("db", "url", env_extra=env).stdout.strip()
        assert url.endswith(f":{env['PGASK_PORT']}/pgask")
        status = pgask("db", "status", env_extra=env)
        assert status.returncode == 0 and status.stdout.startswith("running: ")
        assert (tmp_path / "cluster" / "data" / "PG_VERSION").exists()
    finally:
        stopped = pgask("db", "stop", env_extra=env)
    assert stopped.stdout.strip() == "stopped"
    assert pgask("db", "stop", env_extra=env).stdout.strip() == "not running"
    assert pgask("db", "status", env_extra=env).returncode == 1


def test_db_start_on_a_taken_port_says_so(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"PGASK_HOME": str(tmp_path / "cluster"), "PGASK_PORT": str(port)}
        result = pgask("db", "start", env_extra=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pgask db: port {port} on 127.0.0.1 is taken by another program (another checkout's "
        "pgask cluster?): set PGASK_PORT to a free port")


def test_file_over_10_mb_is_refused(db_url, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("word " * (2 * 1024 * 1024 + 1))
    result = pgask("ingest", "-q", str(big), database_url=db_url)
    assert result.returncode == 1
    assert f"skipped {big}: {big}: file is 10485765 bytes, larger than the limit of 10485760" \
        in result.stderr
