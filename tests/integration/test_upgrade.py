"""Upgrades keep data: a real 0.1.0 database, upgraded by today's `pgask install`.

Design: 0.1.0 is frozen under tests/upgrade/v0_1_0 (its sql/, migrations/ and Python package,
from git commit f3cb10a). The test starts a cluster of its own, because the server's
environment decides which pgask package PL/Python imports (PGASK_PYTHONPATH is searched first):

1. the server runs with 0.1.0's package; 0.1.0's own installer (in a subprocess, so the two
   pgask packages never meet in one interpreter) installs 0.1.0; the test writes documents, a
   pipeline over a user table with custom settings, a setting, an LLM, answers and feedback
   through 0.1.0's SQL API, and snapshots every table that holds them;
2. the server restarts with today's package (as a real upgrade puts a new site directory in
   place), today's install runs, and the snapshots are compared; then the API is exercised:
   search on both pipelines, an answer (logged after the old ones), and writes that re-embed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from fix_cluster import Cluster

from pgask import __version__
from pgask.install import DEFAULT_SITE_DIR, InstallError, install, release

REPO = Path(__file__).resolve().parents[2]
V010 = REPO / "tests" / "upgrade" / "v0_1_0"

# Every table 0.1.0 users keep data in, ordered so rows compare stably; vectors as text.
SNAPSHOTS = {
    "documents": "SELECT id, source, title, content, metadata, updated_at"
                 " FROM rag.documents ORDER BY id",
    "documents_chunks": "SELECT id, document_id, ordinal, content, embed_hash,"
                        " embedding::text, metadata FROM rag.documents_chunks ORDER BY id",
    "tickets_chunks": "SELECT id, document_id, ordinal, content, embed_hash, embedding::text,"
                      " metadata FROM rag.tickets_chunks ORDER BY id",
    "pipelines": "SELECT to_jsonb(p) FROM rag.pipelines AS p ORDER BY name",
    "embedders": "SELECT to_jsonb(e) FROM rag.embedders AS e ORDER BY name",
    "llms": "SELECT to_jsonb(m) FROM rag.llms AS m ORDER BY name",
    "settings": "SELECT key, value FROM rag.settings"
                " WHERE key NOT IN ('version', 'python_site') ORDER BY key",
    "answer_log": "SELECT to_jsonb(a) FROM rag.answer_log AS a ORDER BY id",
    "feedback": "SELECT to_jsonb(f) FROM rag.answer_feedback AS f ORDER BY id",
    "tickets": "SELECT * FROM public.tickets ORDER BY id",
    "bm25_stats": "SELECT to_jsonb(s) FROM rag.bm25_stats AS s ORDER BY 1::text",
}

DOCUMENTS = [
    ("runbooks/disk-full.md", "Disk full",
     "When the disk of the primary is full, first delete old WAL archives, then grow the "
     "volume. Never delete files under pg_wal by hand."),
    ("runbooks/tls.md", "Rotating TLS certificates",
     "Certificates are rotated every 90 days. Copy the new certificate and key into the data "
     "directory and run SELECT pg_reload_conf()."),
]


def _server_env(pythonpath: Path) -> dict[str, str]:
    return {**os.environ, "PGASK_PYTHONPATH": str(pythonpath)}


def _install_0_1_0(url: str) -> None:
    """0.1.0's own installer, importing 0.1.0's package only."""
    code = ("import psycopg, sys; from pgask.install import install; import pgask;"
            " assert pgask.__version__ == '0.1.0', pgask.__file__;"
            " conn = psycopg.connect(sys.argv[1]); install(conn, site_dir=sys.argv[2]);"
            " conn.commit(); conn.close()")
    env = {**os.environ, "PYTHONPATH": str(V010 / "python")}
    subprocess.run([sys.executable, "-c", code, url, DEFAULT_SITE_DIR], check=True, env=env,
                   cwd=V010)


def _write_0_1_0_data(conn: psycopg.Connection) -> None:
    for source, title, content in DOCUMENTS:
        conn.execute("INSERT INTO rag.documents (source, title, content, metadata)"
                     " VALUES (%s, %s, %s, '{\"team\": \"sre\"}')", (source, title, content))
    conn.execute("CREATE TABLE public.tickets (id int PRIMARY KEY, subject text, body text,"
                 " team text)")
    conn.execute("INSERT INTO public.tickets VALUES"
                 " (1, 'ERRCODE 23505 on insert', 'A unique violation PGX-7781 on orders.', 'db'),"
                 " (2, 'Slow dashboard', 'The sales dashboard takes a minute to load.', 'bi')")
    conn.execute("SELECT rag.create_pipeline('tickets', 'public.tickets', 'body',"
                 " title => 'subject', metadata => ARRAY['team'],"
                 " chunker => '{\"max_tokens\": 120}')")
    conn.execute("CALL rag.process_queue()")
    conn.execute("SELECT rag.alter_pipeline('tickets', search_options => '{\"ef_search\": 80}',"
                 " answer_options => '{\"guard\": \"flag\"}', max_attempts => 3)")
    conn.execute("UPDATE rag.settings SET value = '30' WHERE key = 'answer_log_retention_days'")
    conn.execute("SELECT rag.create_llm('gpt', 'openai', 'gpt-4o-mini',"
                 " 'http://127.0.0.1:9/v1', 'OPENAI_API_KEY', make_default => false)")
    (answer,) = conn.execute("SELECT rag.answer('What do I do when the disk is full?',"
                             " model => 'extractive')").fetchone()
    conn.execute("SELECT rag.answer('unique violation on orders', pipeline => 'tickets',"
                 " model => 'extractive')")
    conn.execute("SELECT rag.feedback(%s, true, 'right runbook')", (answer["answer_id"],))


def _snapshot(conn: psycopg.Connection) -> dict[str, list]:
    return {name: conn.execute(query).fetchall() for name, query in SNAPSHOTS.items()}


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def test_an_upgrade_from_0_1_0_keeps_the_data_and_the_api_works(cluster):
    cluster.start(_server_env(V010 / "python"))
    url = cluster.create_database("upgrade")
    _install_0_1_0(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT rag._python_init()").fetchone() == ("0.1.0",)
        _write_0_1_0_data(conn)
        before = _snapshot(conn)
        migrations_before = {r[0] for r in conn.execute("SELECT name FROM rag.migrations")}
    assert len(before["documents_chunks"]) >= 2 and len(before["tickets_chunks"]) == 2
    assert len(before["answer_log"]) == 2 and len(before["feedback"]) == 1

    # The new release: its site directory in place, the server restarted onto it.
    cluster.stop()
    cluster.start(_server_env(REPO / "python" / "src"))
    with psycopg.connect(url, autocommit=True) as conn:
        report = install(conn)
        assert report.version == __version__ != "0.1.0"
        on_disk = {p.name for p in (REPO / "migrations").glob("*.sql")}
        assert sorted(report.applied_migrations) == sorted(on_disk - migrations_before)
        assert conn.execute("SELECT value FROM rag.settings WHERE key = 'version'"
                            ).fetchone() == (__version__,)
        assert conn.execute("SELECT rag._python_init()").fetchone() == (__version__,)
        after = _snapshot(conn)
        # Migration 0010: the old stores keep their tsvector in the row from now on.
        assert conn.execute("SELECT array_agg(DISTINCT a.attstorage) FROM pg_attribute AS a"
                            " JOIN pg_class AS c ON c.oid = a.attrelid"
                            " WHERE c.relnamespace = 'rag'::regnamespace AND c.relkind = 'r'"
                            " AND a.attname = 'tsv'").fetchone() == (["m"],)
        for name in SNAPSHOTS:
            # Columns that later migrations add (e.g. rag.pipelines.broken) are new; every
            # value 0.1.0 had must be there unchanged.
            kept = [tuple({key: value[key] for key in old if key in value}
                          if isinstance(value, dict) else value
                          for value, old in zip(row, old_row, strict=True))
                    for row, old_row in zip(after[name], before[name], strict=False)]
            if name == "pipelines":
                # The key's SQL is pgask's own, written again by every install: since 0.3 the
                # key's text comes from its type's output function, the same in every session.
                kept = [tuple({k: v for k, v in row[0].items()
                               if k not in ("key_sql", "key_join_sql")},) for row in kept]
                before[name] = [tuple({k: v for k, v in row[0].items()
                                       if k not in ("key_sql", "key_join_sql")},)
                                for row in before[name]]
            if name == "settings":  # new releases add settings (bounds); old ones stay
                assert set(before[name]) <= set(after[name]), f"{name} changed in the upgrade"
                continue
            assert len(after[name]) == len(before[name]), f"{name} changed in the upgrade"
            assert kept == before[name], f"{name} changed in the upgrade"

        # The API over the old data.
        hits = conn.execute("SELECT source FROM rag.search('disk full on the primary', 1)"
                            ).fetchall()
        assert hits == [("runbooks/disk-full.md",)]
        hits = conn.execute("SELECT document_id FROM rag.search('PGX-7781', 1,"
                            " pipeline => 'tickets', filter => '{\"team\": \"db\"}')").fetchall()
        assert hits == [("1",)]
        (answer,) = conn.execute("SELECT rag.answer('How often are certificates rotated?',"
                                 " model => 'extractive')").fetchone()
        assert answer["mode"] == "extractive" and "90 days" in answer["answer"]
        assert answer["answer_id"] > max(row[0]["id"] for row in before["answer_log"])

        # Writes re-embed: a ticket through the queue, a document in the writer's transaction.
        conn.execute("UPDATE public.tickets SET body = 'Replication lag on the standby grew"
                     " to an hour after the vacuum.' WHERE id = 2")
        conn.execute("CALL rag.process_queue()")
        (old_vector,) = [r[5] for r in before["tickets_chunks"] if r[1] == "2"]
        (new_vector,) = conn.execute("SELECT embedding::text FROM rag.tickets_chunks"
                                     " WHERE document_id = '2'").fetchone()
        assert new_vector != old_vector
        hits = conn.execute("SELECT document_id FROM rag.search('standby replication lag', 1,"
                            " pipeline => 'tickets')").fetchall()
        assert hits == [("2",)]
        conn.execute("UPDATE rag.documents SET content = 'Certificates are rotated every 30"
                     " days by the cert-manager job.' WHERE source = 'runbooks/tls.md'")
        (content,) = conn.execute("SELECT c.content FROM rag.documents_chunks AS c"
                                  " JOIN rag.documents AS d ON d.id::text = c.document_id"
                                  " WHERE d.source = 'runbooks/tls.md'").fetchone()
        assert "30 days" in content


def test_install_refuses_a_downgrade(db):
    db.execute("UPDATE rag.settings SET value = '99.0.0' WHERE key = 'version'")
    with pytest.raises(InstallError, match=r"pgask 99\.0\.0, newer than this package "
                       rf"\({__version__}\).*downgrade"):
        install(db)
    # Nothing was changed by the refused install.
    assert db.execute("SELECT value FROM rag.settings WHERE key = 'version'"
                      ).fetchone() == ("99.0.0",)


def test_cli_install_refuses_a_downgrade_in_one_line(db, db_url):
    from test_cli import pgask

    db.execute("UPDATE rag.settings SET value = '99.0.0' WHERE key = 'version'")
    result = pgask("install", database_url=db_url)
    assert result.returncode == 1
    assert result.stderr.startswith("pgask install: this database has pgask 99.0.0, newer than "
                                    f"this package ({__version__})")
    assert "Traceback" not in result.stderr


def test_install_over_the_same_or_an_older_version_proceeds(db):
    db.execute("UPDATE rag.settings SET value = '0.0.9' WHERE key = 'version'")
    assert install(db).version == __version__
    assert install(db).version == __version__


def test_release_compares_numerically():
    assert release("0.10.0") > release("0.9.1") > release("0.9") == (0, 9)
    assert release("1.2.3rc1") == (1, 2, 3)
