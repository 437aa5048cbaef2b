"""A user's write is one append (issue 28): whatever the table's shape, the writer's session
settings, the isolation level, two-phase commit or the DDL done to the table, a write never
fails, waits or goes missing because of pgask, and the worker brings the chunks in step.
One test per example of the issue; the seeded property test over all of them together is
tests/integration/test_write_property.py. The end state is checked from scratch by
tests/consistency.py."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from consistency import problems, process_all


def process(db, pipeline=None):
    """Processes the queue until nothing is left (backoffs included)."""
    process_all(db, pipeline)


def status(db, pipeline):
    cur = db.execute("SELECT * FROM rag.pipeline_status WHERE pipeline = %s", (pipeline,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def found(db, pipeline, query="ticket", k=50):
    return sorted(r[0] for r in db.execute(
        "SELECT document_id FROM rag.search(%s, %s, pipeline => %s)", (query, k, pipeline)))


# --- table shapes ---------------------------------------------------------------------------

@pytest.fixture
def parted(srv):
    db = srv
    db.execute("CREATE TABLE pt (id int, region text, body text NOT NULL,"
               " PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
    db.execute("CREATE TABLE pt_eu PARTITION OF pt FOR VALUES IN ('eu')")
    db.execute("CREATE TABLE pt_us PARTITION OF pt FOR VALUES IN ('us')"
               " PARTITION BY RANGE (id)")  # a sub-partitioned partition
    db.execute("CREATE TABLE pt_us_low PARTITION OF pt_us FOR VALUES FROM (0) TO (100)")
    db.execute("CREATE TABLE pt_us_high PARTITION OF pt_us FOR VALUES FROM (100) TO (1000)")
    db.execute("INSERT INTO pt VALUES (1, 'eu', 'ticket one'), (2, 'us', 'ticket two')")
    db.execute("SELECT rag.create_pipeline('pt', 'pt', 'body', embedder => 'srv')")
    process(db, "pt")
    return db


def pt_problems(db):
    return problems(db, "pt", "pt", key="jsonb_build_array(id::text, region)::text")


def test_writes_naming_any_partition_are_captured(parted):
    db = parted
    db.execute("INSERT INTO pt_eu VALUES (3, 'eu', 'ticket three')")
    db.execute("INSERT INTO pt_us_high VALUES (300, 'us', 'ticket high')")
    db.execute("UPDATE pt_eu SET body = 'ticket one, edited' WHERE id = 1")
    db.execute("UPDATE pt_us SET id = 200 WHERE id = 2")  # moves it to another partition
    db.execute("DELETE FROM pt_us_high WHERE id = 300")
    # Gone from search at once: the row that moved to another key (its new key waits for
    # the worker); the edited row is still found.
    assert found(db, "pt") == ['["1", "eu"]']
    process(db, "pt")
    assert pt_problems(db) == []
    db.execute("TRUNCATE pt_eu")
    assert found(db, "pt") == ['["200", "us"]']
    process(db, "pt")
    assert pt_problems(db) == []


def test_partitions_created_attached_detached_and_dropped_are_followed(parted):
    db = parted
    db.execute("CREATE TABLE pt_fr PARTITION OF pt FOR VALUES IN ('fr')")
    db.execute("INSERT INTO pt_fr VALUES (5, 'fr', 'ticket in a new partition')")
    db.execute("CREATE TABLE pt_de (id int, region text, body text NOT NULL,"
               " PRIMARY KEY (id, region))")
    db.execute("INSERT INTO pt_de VALUES (6, 'de', 'ticket attached with its partition')")
    db.execute("ALTER TABLE pt ATTACH PARTITION pt_de FOR VALUES IN ('de')")
    db.execute("INSERT INTO pt_de VALUES (7, 'de', 'ticket written after the attach')")
    process(db, "pt")
    assert pt_problems(db) == []
    assert '["6", "de"]' in found(db, "pt")
    db.execute("ALTER TABLE pt DETACH PARTITION pt_eu")
    db.execute("UPDATE pt_eu SET body = 'ticket no longer in the source'")  # not captured
    db.execute("DROP TABLE pt_fr")
    assert '["1", "eu"]' not in found(db, "pt") and '["5", "fr"]' not in found(db, "pt")
    process(db, "pt")
    assert pt_problems(db) == []
    assert status(db, "pt")["broken"] is None


def test_inheritance_is_refused_and_a_later_child_breaks_the_pipeline(srv):
    db = srv
    db.execute("CREATE TABLE base (id int PRIMARY KEY, body text)")
    db.execute("CREATE TABLE child () INHERITS (base)")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="inheritance children"):
        db.execute("SELECT rag.create_pipeline('base', 'base', 'body', embedder => 'srv')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="inherits from"):
        db.execute("SELECT rag.create_pipeline('child', 'child', 'body', embedder => 'srv')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="is a partition of"):
        db.execute("CREATE TABLE p (id int PRIMARY KEY, body text) PARTITION BY RANGE (id);"
                   " CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);"
                   " SELECT rag.create_pipeline('p1', 'p1', 'body', embedder => 'srv')")
    db.execute("CREATE TABLE solo (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('solo', 'solo', 'body', embedder => 'srv')")
    db.execute("CREATE TABLE solo_child () INHERITS (solo)")
    assert "inheritance children" in status(db, "solo")["broken"]
    db.execute("INSERT INTO solo_child VALUES (1, 'written while broken')")  # still succeeds
    db.execute("INSERT INTO solo VALUES (2, 'written while broken')")
    db.execute("DROP TABLE solo_child")
    db.execute("SELECT rag.alter_pipeline('solo')")
    assert status(db, "solo")["broken"] is None
    process(db, "solo")
    assert problems(db, "solo", "solo") == []


def test_views_and_foreign_shapes_are_refused(srv):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text); CREATE VIEW v AS SELECT * FROM t")
    with pytest.raises(psycopg.errors.WrongObjectType, match="is not a table"):
        db.execute("SELECT rag.create_pipeline('v', 'v', 'body')")


# --- keys do not depend on the writer's session ---------------------------------------------

SESSIONS = [
    "SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = "
    "'sql_standard'; SET extra_float_digits = -3; SET bytea_output = 'escape'",
    "SET TimeZone = 'America/St_Johns'; SET DateStyle = 'German'; SET IntervalStyle = "
    "'iso_8601'; SET extra_float_digits = 0; SET bytea_output = 'hex'",
    "SET TimeZone = 'UTC'; SET DateStyle = 'Postgres, MDY'; SET IntervalStyle = "
    "'postgres_verbose'; SET extra_float_digits = 3",
]

KEYS = {
    "timestamptz": "'2024-03-05 10:30:00.123456+02'",
    "date": "'2024-03-05'",
    "interval": "'1 day 02:03:04.5'",
    "double precision": "0.1",
    "bytea": "'\\x00ff10'",
    "numeric": "1.50",
}


@pytest.mark.parametrize("key_type", KEYS, ids=list(KEYS))
def test_a_key_is_one_document_whatever_the_writers_session(srv, db_url, key_type):
    """A row inserted in one session, updated in another and deleted in a third is one
    document, then none: the key's text never depends on TimeZone, DateStyle, IntervalStyle,
    extra_float_digits or bytea_output."""
    db = srv
    db.execute(f"CREATE TABLE k (id {key_type} PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('k', 'k', 'body', embedder => 'srv')")
    literal = KEYS[key_type]
    statements = [f"INSERT INTO k VALUES ({literal}, 'ticket first version')",
                  f"UPDATE k SET body = 'ticket second version' WHERE id = {literal}"]
    for session, statement in zip(SESSIONS, statements, strict=False):
        with psycopg.connect(db_url, autocommit=True) as writer:
            writer.execute(session)
            writer.execute(statement)
    process(db, "k")
    assert db.execute("SELECT count(DISTINCT document_id), min(content) FROM rag.k_chunks"
                      ).fetchone() == (1, "ticket second version")
    with psycopg.connect(db_url, autocommit=True) as writer:
        writer.execute(SESSIONS[2])
        assert len(found(writer, "k")) == 1  # found from a third session's settings
        writer.execute(f"DELETE FROM k WHERE id = {literal}")
        assert found(writer, "k") == []
    process(db, "k")
    assert db.execute("SELECT count(*) FROM rag.k_chunks").fetchone() == (0,)


# --- DDL on the source -----------------------------------------------------------------------

@pytest.fixture
def items(srv):
    db = srv
    db.execute("CREATE TABLE items (id int PRIMARY KEY, body text, price numeric, qty int,"
               " team text)")
    db.execute("INSERT INTO items VALUES (1, 'ticket about disks', 10, 2, 'sre'),"
               " (2, 'ticket about locks', 9, 3, 'dba')")
    db.execute("SELECT rag.create_pipeline('items', 'items', 'body', embedder => 'srv',"
               " metadata => ARRAY['team', '(price / qty) AS unit_price'])")
    process(db, "items")
    return db


def test_key_type_migrations_are_followed(items):
    db = items
    db.execute("ALTER TABLE items ALTER COLUMN id TYPE bigint")
    db.execute("INSERT INTO items VALUES (3000000000, 'ticket with a big id', 1, 1, 'sre')")
    db.execute("UPDATE items SET body = 'ticket about disks, edited' WHERE id = 1")
    process(db, "items")
    assert status(db, "items")["broken"] is None
    assert problems(db, "items", "items") == []
    assert "3000000000" in found(db, "items")
    db.execute("ALTER TABLE items ALTER COLUMN id TYPE text")
    db.execute("INSERT INTO items VALUES ('t-4', 'ticket with a text id', 1, 1, 'dba')")
    db.execute("DELETE FROM items WHERE id = '2'")
    process(db, "items")
    assert status(db, "items")["broken"] is None
    assert problems(db, "items", "items") == []
    assert db.execute("SELECT count(*) FROM rag.dead_letters").fetchone() == (0,)


def test_a_rewrite_of_the_content_is_followed(items):
    db = items
    db.execute("ALTER TABLE items ALTER COLUMN body TYPE varchar(10) USING left(body, 10)")
    process(db, "items")
    assert sorted(r[0] for r in db.execute("SELECT content FROM rag.items_chunks")) == [
        "ticket abo", "ticket abo"]
    db.execute("ALTER TABLE items ALTER COLUMN body TYPE text USING upper(body)")
    process(db, "items")
    assert problems(db, "items", "items") == []


def test_dropping_a_used_column_breaks_the_pipeline_and_doctor_says_so(items, db_url):
    from test_cli import pgask

    db = items
    db.execute("ALTER TABLE items DROP COLUMN team")
    assert "column team" in status(db, "items")["broken"]
    db.execute("UPDATE items SET body = 'ticket written while broken' WHERE id = 1")
    result = pgask("doctor", database_url=db_url)
    assert result.returncode != 0
    assert "items" in result.stdout and "column team" in result.stdout
    assert "rag.alter_pipeline('items'" in result.stdout


def test_drop_extension_vector_breaks_pipelines_and_install_repairs(items, db_url):
    from test_cli import pgask

    from pgask.install import install

    db = items
    db.execute("DROP EXTENSION vector CASCADE")
    assert "embedding" in status(db, "items")["broken"]
    db.execute("INSERT INTO items VALUES (5, 'ticket while pgvector is gone', 1, 1, 'sre')")
    result = pgask("doctor", database_url=db_url)
    assert result.returncode != 0 and "vector" in result.stdout
    install(db)
    assert status(db, "items")["broken"] is None
    process(db, "items")
    assert problems(db, "items", "items") == []


# --- expressions never fail a write, and one bad row fails alone -----------------------------

def test_a_failing_expression_fails_only_its_row_in_the_worker(items):
    db = items
    db.execute("UPDATE items SET qty = 0 WHERE id = 1")  # price / qty: division by zero
    db.execute("UPDATE items SET body = 'ticket about locks, edited' WHERE id = 2")
    db.execute("INSERT INTO items VALUES (3, 'ticket about replicas', 4, 2, 'sre')")
    process(db, "items")
    dead = db.execute("SELECT document_id, last_error FROM rag.dead_letters").fetchall()
    assert [d[0] for d in dead] == ["1"]
    assert "division by zero" in dead[0][1]
    assert sorted(r[0] for r in db.execute(
        "SELECT document_id FROM rag.items_chunks WHERE content LIKE '%edited'"
        " OR content LIKE '%replicas'")) == ["2", "3"]
    assert db.execute("SELECT count(*) FROM rag.queue WHERE last_error IS NOT NULL"
                      " AND document_id <> '1'").fetchone() == (0,)
    db.execute("UPDATE items SET qty = 1 WHERE id = 1")  # fixed: queued again, and fine
    process(db, "items")
    assert db.execute("SELECT count(*) FROM rag.dead_letters").fetchone() == (0,)


# --- transactions ---------------------------------------------------------------------------

def _prepared_supported(db) -> bool:
    return int(db.execute("SHOW max_prepared_transactions").fetchone()[0]) > 0


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_transaction_that_wrote_a_source_can_be_prepared(srv, db_url, mode):
    db = srv
    if not _prepared_supported(db):
        pytest.skip("the server has max_prepared_transactions = 0")
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute(f"SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv', mode => '{mode}')")
    with psycopg.connect(db_url) as writer:
        writer.execute("INSERT INTO t VALUES (1, 'ticket committed in two phases')")
        writer.execute("PREPARE TRANSACTION 'pgask_test_commit'")
    with psycopg.connect(db_url) as writer:
        writer.execute("INSERT INTO t VALUES (2, 'ticket rolled back in two phases')")
        writer.execute("PREPARE TRANSACTION 'pgask_test_rollback'")
    db.execute("COMMIT PREPARED 'pgask_test_commit'")
    db.execute("ROLLBACK PREPARED 'pgask_test_rollback'")
    process(db, "t")
    assert problems(db, "t", "t") == []


def test_a_forgotten_prepared_transaction_does_not_stop_the_pipeline(srv, db_url):
    db = srv
    if not _prepared_supported(db):
        pytest.skip("the server has max_prepared_transactions = 0")
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO t VALUES (1, 'ticket one'), (2, 'ticket two')")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv', mode => 'sync')")
    process(db, "t")
    with psycopg.connect(db_url) as writer:  # rewrites row 1's chunks, then is forgotten
        writer.execute("UPDATE t SET body = 'ticket one, prepared' WHERE id = 1")
        writer.execute("PREPARE TRANSACTION 'pgask_test_forgotten'")
    try:
        db.execute("UPDATE t SET body = 'ticket two, edited' WHERE id = 2")
        db.execute("INSERT INTO t VALUES (3, 'ticket three')")
        db.execute("CALL rag.process_queue('t')")
        assert sorted(r[0] for r in db.execute(
            "SELECT content FROM rag.t_chunks WHERE document_id IN ('2', '3')")) == [
            "ticket three", "ticket two, edited"]
    finally:
        db.execute("ROLLBACK PREPARED 'pgask_test_forgotten'")
    process(db, "t")
    assert problems(db, "t", "t") == []


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_concurrent_writers_of_different_rows_never_conflict_through_pgask(srv, db_url,
                                                                           isolation):
    """Two transactions deleting (and updating) different rows both commit, and neither
    waits for the other: the write path shares no row and takes no lock."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO t SELECT g, 'ticket ' || g FROM generate_series(1, 4) g")
    for mode in ("async", "sync"):
        db.execute("SELECT rag.drop_pipeline('t') FROM rag.pipelines WHERE name = 't'")
        db.execute(f"SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv',"
                   f" mode => '{mode}')")
        process(db, "t")
        first, second = psycopg.connect(db_url), psycopg.connect(db_url)
        try:
            for conn in (first, second):
                conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                conn.execute("SET lock_timeout = '200ms'")
            first.execute("DELETE FROM t WHERE id = 1")
            second.execute("DELETE FROM t WHERE id = 2")
            first.execute("UPDATE t SET body = 'ticket three, edited' WHERE id = 3")
            second.execute("UPDATE t SET body = 'ticket four, edited' WHERE id = 4")
            first.commit()
            second.commit()
        finally:
            first.close()
            second.close()
        process(db, "t")
        assert problems(db, "t", "t") == []
        db.execute("INSERT INTO t VALUES (1, 'ticket 1'), (2, 'ticket 2')")


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_serializable_write_takes_no_predicate_lock_of_pgasks(srv, db_url, mode):
    """Under SERIALIZABLE, anything pgask read in a writer's transaction would take predicate
    locks, through which two writers of different rows could fail each other (40001): the
    capture reads nothing of pgask's (no index on rag.inbox, no lookup, no processing
    outside READ COMMITTED), on a plain and a partitioned source alike."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("CREATE TABLE tp (id int, region text, body text, PRIMARY KEY (id, region))"
               " PARTITION BY LIST (region)")
    db.execute("CREATE TABLE tp_eu PARTITION OF tp FOR VALUES IN ('eu')")
    db.execute("INSERT INTO t VALUES (1, 'ticket one'), (2, 'ticket two')")
    db.execute("INSERT INTO tp VALUES (1, 'eu', 'ticket one')")
    for source in ("t", "tp"):
        db.execute(f"SELECT rag.create_pipeline('{source}', '{source}', 'body',"
                   f" embedder => 'srv', mode => '{mode}')")
        process(db, source)
    with psycopg.connect(db_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        conn.execute("INSERT INTO t VALUES (3, 'ticket three')")
        conn.execute("UPDATE t SET body = 'ticket one, edited' WHERE id = 1")
        conn.execute("DELETE FROM t WHERE id = 2")
        conn.execute("INSERT INTO tp_eu VALUES (2, 'eu', 'ticket two')")
        conn.execute("UPDATE tp SET body = 'edited' WHERE id = 1")
        held = conn.execute(
            "SELECT DISTINCT c.oid::regclass::text FROM pg_locks AS l"
            " JOIN pg_class AS c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND l.mode = 'SIReadLock'"
            " AND c.relnamespace IN ('rag'::regnamespace, 'rag_source'::regnamespace)"
            " ORDER BY 1").fetchall()
        conn.commit()
    assert held == []


def test_a_sync_pipeline_whose_embedder_hangs_never_fails_the_write(srv, db_url,
                                                                      embedding_server):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv', mode => 'sync')")
    embedding_server.fail_next({"delay": 5, "times": 5})
    notices = []
    with psycopg.connect(db_url, autocommit=True) as writer:
        writer.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        # 3 s, not less: sync processing starts only while under half of it is spent, and
        # on a busy machine the INSERT alone took over 0.5 s (the row was then left queued
        # without trying, and without the warning this test is about).
        writer.execute("SET statement_timeout = '3s'")
        writer.execute("INSERT INTO t VALUES (1, 'ticket written under a timeout')")
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert notices and all("Traceback" not in n for n in notices), notices
    assert "stay queued" in notices[0]
    embedding_server.reset()
    process(db, "t")
    assert problems(db, "t", "t") == []


def test_a_delete_takes_no_lock_another_writer_waits_for(srv, db_url):
    """Deletes, updates and inserts of different rows by two open transactions: neither
    waits (lock_timeout 100 ms), whatever the mode."""
    db = srv
    for mode in ("async", "sync"):
        db.execute("DROP TABLE IF EXISTS t CASCADE")
        db.execute("SELECT rag.drop_pipeline('t') FROM rag.pipelines WHERE name = 't'")
        db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
        db.execute("INSERT INTO t SELECT g, 'ticket ' || g FROM generate_series(1, 4) g")
        db.execute(f"SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv',"
                   f" mode => '{mode}')")
        process(db, "t")
        with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
            first.execute("SET lock_timeout = '100ms'")
            second.execute("SET lock_timeout = '100ms'")
            first.execute("DELETE FROM t WHERE id = 1")
            second.execute("DELETE FROM t WHERE id = 2")
            second.execute("INSERT INTO t VALUES (5, 'ticket five')")
            first.execute("UPDATE t SET body = 'ticket three, edited' WHERE id = 3")
            # A worker runs meanwhile: it never waits on the open transactions either.
            db.execute("SET lock_timeout = '1s'")
            db.execute("CALL rag.process_queue('t')")
            db.execute("RESET lock_timeout")
        process(db, "t")
        assert problems(db, "t", "t") == []


def test_writes_in_parallel_with_ddl_and_workers(srv, db_url):
    """Writers keep writing while the source's owner adds, renames and drops a column and
    retypes the key, and a worker processes: no write fails."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    errors: list = []

    def write(offset: int) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for i in range(60):
                try:
                    conn.execute("INSERT INTO t (id, body) VALUES (%s, %s) ON CONFLICT (id)"
                                 " DO NOTHING", (offset + i, f"ticket {offset + i}"))
                except psycopg.Error as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(2)]
    for thread in threads:
        thread.start()
    db.execute("ALTER TABLE t ADD COLUMN extra int")
    db.execute("ALTER TABLE t ALTER COLUMN id TYPE bigint")
    db.execute("ALTER TABLE t RENAME COLUMN extra TO extra2")
    db.execute("CALL rag.process_queue('t')")
    db.execute("ALTER TABLE t DROP COLUMN extra2")
    for thread in threads:
        thread.join(120)
    assert errors == []
    process(db, "t")
    assert problems(db, "t", "t") == []


# --- what the first attack round found (issue 28): each a class, with its variants --------

def test_a_source_attached_under_another_table_breaks_and_detaching_repairs(srv):
    """The source becomes a partition of another table (writes through that parent would
    bypass its statement triggers): broken at once, and whole again when detached."""
    db = srv
    db.execute("CREATE TABLE outer_t (id int, region text, body text, PRIMARY KEY (id, region))"
               " PARTITION BY LIST (region)")
    db.execute("CREATE TABLE inner_t (id int, region text, body text, PRIMARY KEY (id, region))")
    db.execute("INSERT INTO inner_t VALUES (1, 'x', 'ticket inside')")
    db.execute("SELECT rag.create_pipeline('inner_t', 'inner_t', 'body', embedder => 'srv')")
    process(db, "inner_t")
    db.execute("ALTER TABLE outer_t ATTACH PARTITION inner_t FOR VALUES IN ('x')")
    assert "is a partition of" in status(db, "inner_t")["broken"]
    db.execute("INSERT INTO outer_t VALUES (2, 'x', 'ticket through the parent')")
    db.execute("ALTER TABLE outer_t DETACH PARTITION inner_t")
    assert status(db, "inner_t")["broken"] is None
    process(db, "inner_t")  # repaired: every row checked again, the missed write included
    assert problems(db, "inner_t", "inner_t",
                    key="jsonb_build_array(id::text, region)::text") == []


NO_REWRITE_CHANGES = {
    # what the content reads, the table, the change that alters the text without a rewrite
    "enum value renamed": (
        "body || ' ' || mood::text",
        "CREATE TYPE feeling AS ENUM ('sad', 'ok');"
        " CREATE TABLE t (id int PRIMARY KEY, body text, mood feeling)",
        "INSERT INTO t VALUES (1, 'ticket', 'sad')",
        "ALTER TYPE feeling RENAME VALUE 'sad' TO 'glad'"),
    "timestamp to timestamptz": (
        "body || ' ' || at::text",
        "CREATE TABLE t (id int PRIMARY KEY, body text, at timestamp)",
        "INSERT INTO t VALUES (1, 'ticket', '2026-01-02 03:04:05')",
        "SET TimeZone = 'UTC'; ALTER TABLE t ALTER COLUMN at TYPE timestamptz"),
    "varchar to a domain over text": (
        "body || ' ' || (pg_typeof(code)::regtype::oid = 'varchar'::regtype::oid)::text",
        "CREATE DOMAIN code_text AS text; CREATE TABLE t (id int PRIMARY KEY, body text,"
        " code varchar(8))",
        "INSERT INTO t VALUES (1, 'ticket', 'A1')",
        "ALTER TABLE t ALTER COLUMN code TYPE code_text"),
}


@pytest.mark.parametrize("change", NO_REWRITE_CHANGES, ids=list(NO_REWRITE_CHANGES))
def test_changes_that_alter_the_text_without_a_rewrite_are_followed(srv, change):
    content, create, insert, alter = NO_REWRITE_CHANGES[change]
    db = srv
    db.execute(create)
    db.execute(insert)
    db.execute("SELECT rag.create_pipeline('t', 't', %s, embedder => 'srv')", (content,))
    process(db, "t")
    before = db.execute("SELECT content FROM rag.t_chunks").fetchall()
    db.execute(alter)
    process(db, "t")
    assert db.execute("SELECT content FROM rag.t_chunks").fetchall() != before
    assert problems(db, "t", "t", content=content) == []


def test_a_new_primary_key_is_followed_by_capture_and_reader(srv):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, code text NOT NULL UNIQUE, body text)")
    db.execute("INSERT INTO t VALUES (1, 'a', 'ticket one'), (2, 'b', 'ticket two')")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    process(db, "t")
    db.execute("ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (code)")
    db.execute("INSERT INTO t VALUES (3, 'c', 'ticket three')")
    db.execute("UPDATE t SET body = 'ticket one, edited' WHERE code = 'a'")
    process(db, "t")
    assert status(db, "t")["broken"] is None
    assert problems(db, "t", "t", key="code") == []


def test_writes_under_the_replica_role_are_captured(srv):
    """Logical replication applies changes with session_replication_role = replica: the
    capture triggers fire ALWAYS."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    db.execute("SET session_replication_role = replica")
    try:
        db.execute("INSERT INTO t VALUES (1, 'ticket applied by a subscriber')")
    finally:
        db.execute("RESET session_replication_role")
    process(db, "t")
    assert problems(db, "t", "t") == []


@pytest.mark.parametrize("removal", [
    "ALTER TABLE t DISABLE TRIGGER pgask_t_update",
    "ALTER TABLE t ENABLE REPLICA TRIGGER pgask_t_insert",
    "DROP TRIGGER pgask_t_delete ON t",
    "ALTER TABLE t DISABLE TRIGGER ALL",
])
def test_capture_triggers_switched_off_break_the_pipeline_until_repaired(srv, removal):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO t VALUES (1, 'ticket one')")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    process(db, "t")
    db.execute(removal)
    assert "missing or disabled" in status(db, "t")["broken"]
    db.execute("INSERT INTO t VALUES (2, 'ticket written while not captured')")
    db.execute("SELECT rag.alter_pipeline('t')")  # as the owner (a superuser here)
    assert status(db, "t")["broken"] is None
    process(db, "t")  # repaired: every row checked again
    assert problems(db, "t", "t") == []


@pytest.mark.parametrize("call", [
    "SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')",
    "SELECT rag.drop_pipeline('t')",
])
def test_pipeline_ddl_never_makes_the_source_writers_queue(srv, db_url, call):
    """A transaction holds the source; creating or dropping a pipeline on it either waits
    without making later writers queue behind it, or gives up with 55P03."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    if "drop" in call:
        db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    outcome: list = []
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as admin, \
            psycopg.connect(db_url, autocommit=True) as writer:
        holder.execute("INSERT INTO t VALUES (1, 'ticket in an open transaction')")

        def run():
            try:
                admin.execute(call)
                outcome.append("done")
            except psycopg.Error as exc:
                outcome.append(exc.sqlstate)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.5)  # the call is trying now
        # Would wait behind a queued lock request for as long as the holder lives.
        writer.execute("SET lock_timeout = '2s'")
        for i in range(2, 6):
            writer.execute("INSERT INTO t VALUES (%s, 'ticket from another writer')", (i,))
        thread.join()
        holder.rollback()
    assert outcome == ["55P03"], outcome


def test_sync_processing_is_bounded_and_cancellable(srv, db_url, embedding_server):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv', mode => 'sync')")
    db.execute("INSERT INTO rag.settings (key, value) VALUES ('sync_max_rows', '10')"
               " ON CONFLICT (key) DO UPDATE SET value = excluded.value")
    db.execute("INSERT INTO t SELECT g, 'ticket ' || g FROM generate_series(1, 25) g")
    assert db.execute("SELECT count(DISTINCT document_id) FROM rag.t_chunks").fetchone() == (10,)
    assert db.execute("SELECT sum(cardinality(document_ids)) FROM rag.inbox"
                      " WHERE pipeline = 't'").fetchone() == (15,)
    process(db, "t")
    assert problems(db, "t", "t") == []
    # A cancel of a write whose sync embedding hangs cancels the write (it is the user's).
    embedding_server.fail_next({"delay": 5, "times": 3})
    with psycopg.connect(db_url, autocommit=True) as writer:
        pid = writer.info.backend_pid
        timer = threading.Timer(1.0, lambda: db.execute("SELECT pg_cancel_backend(%s)", (pid,)))
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            writer.execute("INSERT INTO t VALUES (100, 'ticket whose write is cancelled')")
        timer.join()
    assert db.execute("SELECT count(*) FROM t WHERE id = 100").fetchone() == (0,)


def test_a_worker_defers_a_document_a_sync_writer_holds(srv, db_url):
    """A sync writer's open transaction is writing row 1's chunks; a worker with row 1
    queued neither waits for it nor counts an attempt: the job waits for later."""
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO t VALUES (1, 'ticket one')")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv', mode => 'sync')")
    process(db, "t")
    with psycopg.connect(db_url) as queued_writer:  # not processed at once: queued
        queued_writer.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        queued_writer.execute("UPDATE t SET body = 'ticket one, queued' WHERE id = 1")
    with psycopg.connect(db_url) as writer:
        writer.execute("UPDATE t SET body = 'ticket one, being written' WHERE id = 1")
        db.execute("SET lock_timeout = '500ms'")  # the worker must not need to wait
        db.execute("CALL rag.process_queue('t')")
        db.execute("RESET lock_timeout")
        attempts, later = db.execute(
            "SELECT attempts, not_before > now() FROM rag.queue WHERE pipeline = 't'"
            " AND document_id = '1'").fetchone()
        assert (attempts, later) == (0, True)
        writer.commit()
    db.execute("UPDATE rag.queue SET not_before = now() WHERE pipeline = 't'")
    process(db, "t")
    assert problems(db, "t", "t") == []


def test_source_columns_named_like_pgask_internals_are_read(srv):
    db = srv
    db.execute('CREATE TABLE t (document_id int PRIMARY KEY, _pgask_key text, k text,'
               ' "s" text, body text)')
    db.execute("INSERT INTO t VALUES (1, 'a', 'b', 'c', 'ticket one')")
    db.execute("SELECT rag.create_pipeline('t', 't',"
               " $$body || ' ' || _pgask_key || k || s || document_id$$, embedder => 'srv',"
               " metadata => ARRAY['k', '_pgask_key'])")
    process(db, "t")
    assert status(db, "t")["broken"] is None
    assert problems(db, "t", "t", key="document_id",
                    content="body || ' ' || _pgask_key || k || s || document_id") == []


def test_an_embeddings_reply_without_data_is_a_clear_dead_letter(srv, embedding_server):
    db = srv
    db.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('t', 't', 'body', embedder => 'srv')")
    for body in ('{"object": "list"}', '{"error": {"message": "quota"}}', '{"data": {}}',
                 '[]'):
        embedding_server.fail_next({"body": body})
        db.execute("INSERT INTO t VALUES (1, 'ticket one')")
        db.execute("CALL rag.process_queue('t')")
        (error,) = db.execute("SELECT last_error FROM rag.dead_letters").fetchone()
        assert "srv" in error and "data" in error and "Traceback" not in error, error
        db.execute("DELETE FROM t")
        db.execute("DELETE FROM rag.queue")
