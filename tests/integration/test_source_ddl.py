"""DDL on a pipeline's source table is followed, never fatal: renames keep the pipeline
working, a dropped column or table marks it broken (visible in rag.pipeline_status), and
whatever the DDL, the user's INSERT, UPDATE, DELETE and TRUNCATE succeed; drop_pipeline,
alter_pipeline and `pgask install` work on a broken pipeline."""

import psycopg
import pytest

from pgask.install import install

TICKETS = """
CREATE TABLE tickets (
    id integer PRIMARY KEY,
    subject text,
    body text,
    team text,
    unused integer
);
INSERT INTO tickets VALUES
    (1, 'Disk full', 'Free space by removing old WAL files.', 'sre', 0),
    (2, 'Slow queries', 'Add an index on the filtered columns.', 'dba', 0);
SELECT rag.create_pipeline('tickets', 'tickets', 'body', title => 'subject',
                           metadata => ARRAY['team']);
"""


@pytest.fixture
def tickets(db):
    db.execute(TICKETS)
    process(db)
    return db


def process(db):
    return db.execute("CALL rag.process_queue('tickets')").fetchone()[0]


def status(db):
    cur = db.execute("SELECT * FROM rag.pipeline_status WHERE pipeline = 'tickets'")
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def chunks(db):
    return sorted(db.execute("SELECT document_id, content, title, metadata"
                             " FROM rag.tickets_chunks").fetchall())


# (DDL, the table's name after it, its columns after it: key, title, content, team)
FOLLOWED = {
    "rename content column": ("ALTER TABLE tickets RENAME COLUMN body TO text_body",
                              "tickets", ("id", "subject", "text_body", "team")),
    "rename title column": ("ALTER TABLE tickets RENAME COLUMN subject TO heading",
                            "tickets", ("id", "heading", "body", "team")),
    "rename metadata column": ("ALTER TABLE tickets RENAME COLUMN team TO \"Squad\"",
                               "tickets", ("id", "subject", "body", '"Squad"')),
    "rename key column": ("ALTER TABLE tickets RENAME COLUMN id TO ticket_id",
                          "tickets", ("ticket_id", "subject", "body", "team")),
    "rename table": ("ALTER TABLE tickets RENAME TO issues", "issues",
                     ("id", "subject", "body", "team")),
    "set schema": ("CREATE SCHEMA support; ALTER TABLE tickets SET SCHEMA support",
                   "support.tickets", ("id", "subject", "body", "team")),
    "add column": ("ALTER TABLE tickets ADD COLUMN priority integer", "tickets",
                   ("id", "subject", "body", "team")),
    "drop unused column": ("ALTER TABLE tickets DROP COLUMN unused", "tickets",
                           ("id", "subject", "body", "team")),
    "content column to varchar": ("ALTER TABLE tickets ALTER COLUMN body TYPE varchar(200)",
                                  "tickets", ("id", "subject", "body", "team")),
}


@pytest.mark.parametrize("ddl", FOLLOWED, ids=list(FOLLOWED))
def test_followed_ddl_then_every_write_kind(tickets, ddl):
    db = tickets
    statement, table, (key, title, content, team) = FOLLOWED[ddl]
    db.execute(statement)
    assert status(db)["broken"] is None
    db.execute(f"INSERT INTO {table} ({key}, {title}, {content}, {team})"
               " VALUES (3, 'Replica lag', 'Check the network between the nodes.', 'sre')")
    db.execute(f"UPDATE {table} SET {content} = 'Vacuum the table first.' WHERE {key} = 2")
    db.execute(f"DELETE FROM {table} WHERE {key} = 1")
    assert process(db) == 2
    assert chunks(db) == [
        ("2", "Vacuum the table first.", "Slow queries", {"team": "dba"}),
        ("3", "Check the network between the nodes.", "Replica lag", {"team": "sre"}),
    ]
    assert db.execute("SELECT document_id FROM rag.search('network between nodes', 1,"
                      " pipeline => 'tickets')").fetchall() == [("3",)]
    db.execute(f"TRUNCATE {table}")
    # Gone from search when the TRUNCATE commits; the chunks, once a worker has run.
    assert db.execute("SELECT document_id FROM rag.search('network between nodes', 1,"
                      " pipeline => 'tickets')").fetchall() == []
    process(db)
    assert chunks(db) == []
    assert status(db)["broken"] is None


# (DDL, what the reason names, the columns left for writes: key, content)
BREAKING = {
    "drop content column": ("ALTER TABLE tickets DROP COLUMN body", "column body",
                            ("id", "subject")),
    "drop title column": ("ALTER TABLE tickets DROP COLUMN subject", "column subject",
                          ("id", "body")),
    "drop metadata column": ("ALTER TABLE tickets DROP COLUMN team", "column team",
                             ("id", "body")),
    "content column to integer": (
        "ALTER TABLE tickets ALTER COLUMN body TYPE integer USING length(body)",
        "content", ("id", "subject")),
}


@pytest.mark.parametrize("ddl", BREAKING, ids=list(BREAKING))
def test_breaking_ddl_marks_the_pipeline_and_every_write_still_succeeds(tickets, ddl):
    db = tickets
    statement, reason, (key, other) = BREAKING[ddl]
    db.execute(statement)
    broken = status(db)["broken"]
    assert broken is not None and reason in broken, broken
    db.execute(f"INSERT INTO tickets ({key}, {other}) VALUES (3, 'x')")
    db.execute(f"UPDATE tickets SET {other} = 'y' WHERE {key} = 2")
    db.execute(f"DELETE FROM tickets WHERE {key} = 1")
    assert process(db) == 0  # a broken pipeline's queue waits
    db.execute("TRUNCATE tickets")
    # install, alter and drop still work on it; the name can be used again.
    install(db)
    db.execute("SELECT rag.alter_pipeline('tickets', max_attempts => 3)")
    assert status(db)["broken"] == broken
    db.execute("SELECT rag.drop_pipeline('tickets')")
    assert db.execute("SELECT count(*) FROM rag.pipelines WHERE name = 'tickets'"
                      ).fetchone() == (0,)


def test_a_dropped_metadata_column_is_repaired_by_alter_pipeline(tickets):
    db = tickets
    db.execute("ALTER TABLE tickets DROP COLUMN team")
    db.execute("UPDATE tickets SET body = 'Written while broken.' WHERE id = 2")
    assert "column team" in status(db)["broken"]
    db.execute("SELECT rag.alter_pipeline('tickets', metadata => ARRAY[]::text[])")
    assert status(db)["broken"] is None
    process(db)
    assert chunks(db) == [
        ("1", "Free space by removing old WAL files.", "Disk full", {}),
        ("2", "Written while broken.", "Slow queries", {}),
    ]
    db.execute("INSERT INTO tickets (id, body) VALUES (3, 'Captured again.')")
    assert status(db)["pending"] == 1


def test_drop_table_marks_the_pipeline_and_everything_still_works(tickets):
    db = tickets
    db.execute("DROP TABLE tickets")
    row = status(db)
    assert row["broken"] == "source table public.tickets was dropped"
    install(db)  # re-applies every sql/ file over the broken pipeline
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="source table"):
        db.execute("SELECT rag.reembed('tickets', 'local')")
    db.execute("SELECT rag.drop_pipeline('tickets')")
    assert db.execute("SELECT to_regclass('rag.tickets_chunks_1')").fetchone() == (None,)
    db.execute(TICKETS)  # the same names again
    assert process(db) == 2


def test_drop_schema_cascade_of_the_source(tickets):
    db = tickets
    db.execute("CREATE SCHEMA support; ALTER TABLE tickets SET SCHEMA support")
    db.execute("DROP SCHEMA support CASCADE")
    assert "was dropped" in status(db)["broken"]
    db.execute("SELECT rag.drop_pipeline('tickets')")


def test_metadata_is_validated_at_create_and_alter(tickets):
    db = tickets
    with pytest.raises(psycopg.errors.UndefinedColumn,
                       match="rag.alter_pipeline: metadata column \"taem\" does not exist"):
        db.execute("SELECT rag.alter_pipeline('tickets', metadata => ARRAY['taem'])")
    with pytest.raises(psycopg.errors.UndefinedColumn,
                       match="rag.create_pipeline: metadata column \"taem\" does not exist"):
        db.execute("SELECT rag.create_pipeline('t2', 'tickets', 'body',"
                   " metadata => ARRAY['team', 'taem'])")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match="metadata entry .*upper\\(team\\).* 'expression AS key'"):
        db.execute("SELECT rag.alter_pipeline('tickets', metadata => ARRAY['upper(team)'])")
    with pytest.raises(psycopg.errors.UndefinedColumn, match="taem"):
        db.execute("SELECT rag.alter_pipeline('tickets',"
                   " metadata => ARRAY['upper(taem) AS squad'])")


def test_metadata_expressions_are_stored_and_follow_renames(tickets):
    db = tickets
    db.execute("SELECT rag.alter_pipeline('tickets',"
               " metadata => ARRAY['team', 'upper(team) AS squad', 'length(body) AS size'])")
    process(db)
    assert chunks(db)[0][3] == {"team": "sre", "squad": "SRE", "size": 37}
    db.execute("ALTER TABLE tickets RENAME COLUMN team TO crew")
    db.execute("UPDATE tickets SET crew = 'ops' WHERE id = 1")
    process(db)
    assert chunks(db)[0][3] == {"team": "ops", "squad": "OPS", "size": 37}
