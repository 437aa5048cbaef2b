"""Second attack round on the write path's reliability (docs/reliability.md, sections 1-2):
writes that fail, block because of pgask, or go missing (chunks that never catch up), and
work that is unbounded. One test per attack; each passes when pgask keeps its promise and
fails when the attack succeeds. Blocking is detected with lock_timeout on the victim
session, missing writes with tests/consistency.py after draining the queue; no timed
assertion. The attacks that held stay here as regression tests."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from consistency import problems, process_all

from pgask.install import install

PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"


def process(db, pipeline=None):
    """Processes the queue until nothing is pending (backoffs included)."""
    process_all(db, pipeline, seconds=60)


def blocked(db_url, sql, timeout="300ms") -> bool:
    """Whether `sql`, run in a fresh autocommit session with lock_timeout, had to wait."""
    with psycopg.connect(db_url, autocommit=True) as victim:
        victim.execute(f"SET lock_timeout = '{timeout}'")
        try:
            victim.execute(sql)
        except psycopg.errors.LockNotAvailable:
            return True
    return False


@pytest.fixture
def parted(srv):
    db = srv
    db.execute("CREATE TABLE q (id int, region text, body text NOT NULL,"
               " PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
    db.execute("CREATE TABLE q_a PARTITION OF q FOR VALUES IN ('a')")
    db.execute("CREATE TABLE q_b PARTITION OF q FOR VALUES IN ('b')")
    db.execute("INSERT INTO q VALUES (1, 'a', 'ticket one'), (2, 'b', 'ticket two')")
    db.execute("SELECT rag.create_pipeline('q', 'q', 'body', embedder => 'srv')")
    process(db, "q")
    return db


def q_problems(db):
    return problems(db, "q", "q", key="jsonb_build_array(id::text, region)::text")


# --- findings: promises broken ---------------------------------------------------------------

def test_ddl_on_one_partition_never_blocks_a_truncate_of_another(parted, db_url):
    """ATTACK: a transaction runs ALTER TABLE on partition q_a (a CHECK constraint) and stays
    open; another session truncates partition q_b. PostgreSQL itself locks only q_a, but
    pgask's event triggers (rag._on_ddl_as_runner -> rag._attach_capture ->
    rag._capture_targets, rag._check_source, rag._source_shape) call pg_partition_tree(),
    which takes ACCESS SHARE on EVERY partition and keeps it until the DDL's transaction
    ends: the TRUNCATE (and DETACH or DROP of q_b) waits because of pgask."""
    with psycopg.connect(db_url) as ddl:
        ddl.execute("ALTER TABLE q_a ADD CONSTRAINT q_a_positive CHECK (id > 0)")
        held = ddl.execute(
            "SELECT array_agg(relation::regclass::text ORDER BY 1) FROM pg_locks"
            " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            " AND relation = 'q_b'::regclass").fetchone()[0]
        truncate_waited = blocked(db_url, "BEGIN; TRUNCATE q_b; ROLLBACK")
        ddl.rollback()
    assert not truncate_waited, f"TRUNCATE q_b waited for a DDL on q_a (pgask holds {held})"


def test_create_pipeline_never_holds_the_writers_for_the_backfill(srv, db_url):
    """ATTACK: rag.create_pipeline on a 100,000-row table. It takes SHARE ROW EXCLUSIVE on
    the source (to create the capture triggers) and only then runs rag._reconcile(name,
    'all'), reading every key of the table through the reader and queueing a job per row,
    in the same transaction: every writer of the table waits for a full scan of it (8 s for
    200,000 rows here). A writer with lock_timeout 500 ms must get through."""
    db = srv
    db.execute("CREATE TABLE big (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO big SELECT g, 'ticket' FROM generate_series(1, 100000) g")
    outcome: list = []

    def create():
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT rag.create_pipeline('big', 'big', 'body', embedder => 'srv')")
            outcome.append("created")

    thread = threading.Thread(target=create)
    thread.start()
    try:
        while not db.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE relation ="
                             " 'big'::regclass AND mode = 'ShareRowExclusiveLock' AND granted)"
                             ).fetchone()[0]:
            assert thread.is_alive() or outcome, "create_pipeline ended without locking"
            if outcome:
                break
            time.sleep(0.005)
        waited = blocked(db_url, "INSERT INTO big VALUES (0, 'ticket written meanwhile')",
                         timeout="500ms")
    finally:
        thread.join(60)
    assert outcome == ["created"]
    assert not waited, "a writer waited for create_pipeline's backfill scan"


def test_reembed_gives_the_worker_its_new_chunk_table(srv):
    """ATTACK: rag.reembed, then the worker. rag._create_store makes the new chunk table,
    but rag._sync_security (which grants pgask_worker its writes) runs before building_set
    is recorded and never again: the worker gets 'permission denied for table
    <p>_chunks_2' on every row, the rows go to the dead letters, the switch never happens
    (test_queue.py::test_blue_green_reembed_keeps_search_answering fails the same way)."""
    db = srv
    db.execute("CREATE TABLE r (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO r VALUES (1, 'ticket one'), (2, 'ticket two')")
    db.execute("SELECT rag.create_pipeline('r', 'r', 'body', embedder => 'srv')")
    process(db, "r")
    db.execute("SELECT rag.reembed('r', 'srv2')")
    for _ in range(3):
        db.execute("CALL rag.process_queue('r')")
    errors = [e for (e,) in db.execute("SELECT last_error FROM rag.queue WHERE pipeline = 'r'")]
    assert db.execute("SELECT active_set, building_set FROM rag.pipelines WHERE name = 'r'"
                      ).fetchone() == (2, None), errors
    assert problems(db, "r", "r") == []


def test_a_write_committed_while_a_reembed_is_uncommitted_reaches_the_new_set(srv, db_url):
    """ATTACK: an admin runs rag.reembed in a transaction (its rag._reconcile reads the keys
    under its snapshot); meanwhile a row is inserted and committed, and a worker drains it
    while building_set is still invisible, so it is queued for the old set only; then the
    reembed commits. Nothing queues that row for the new set: after the switch it has no
    chunks. (rag._sync_security is run by hand after the commit, so this test is not about
    the privilege bug above.)"""
    db = srv
    db.execute("CREATE TABLE r (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO r VALUES (1, 'ticket one')")
    db.execute("SELECT rag.create_pipeline('r', 'r', 'body', embedder => 'srv')")
    process(db, "r")
    with psycopg.connect(db_url) as admin:
        admin.execute("SELECT rag.reembed('r', 'srv2')")
        db.execute("INSERT INTO r VALUES (2, 'ticket two, written during the reembed')")
        db.execute("CALL rag.process_queue('r')")
        admin.commit()
    db.execute("SELECT rag._sync_security('r')")
    process(db, "r")
    assert db.execute("SELECT building_set FROM rag.pipelines WHERE name = 'r'"
                      ).fetchone() == (None,)
    assert problems(db, "r", "r") == []


def test_a_source_with_forced_row_level_security_keeps_every_row(srv, db_url):
    """ATTACK: a multi-tenant source: its owner FORCEs row-level security with a policy on
    a session setting (tenant = current_setting('app.tenant', true)), the usual way to keep
    the application role itself in its tenant. The reader runs as the owner, in the worker's
    session where app.tenant is unset, so it sees no row; the worker takes every row as
    deleted: row 1's chunks are removed and row 2 is never embedded, silently (no error, no
    dead letter, pipeline not broken)."""
    db = srv
    db.execute("DO $$ BEGIN CREATE ROLE tenant_owner; EXCEPTION WHEN duplicate_object THEN"
               " NULL; END $$")
    db.execute("CREATE TABLE mt (id int PRIMARY KEY, tenant text NOT NULL, body text)")
    db.execute("ALTER TABLE mt OWNER TO tenant_owner")
    db.execute("INSERT INTO mt VALUES (1, 'acme', 'ticket one of acme')")
    db.execute("SELECT rag.create_pipeline('mt', 'mt', 'body', embedder => 'srv')")
    process(db, "mt")
    assert problems(db, "mt", "mt") == []
    db.execute("ALTER TABLE mt ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY by_tenant ON mt USING (tenant = current_setting('app.tenant', true))")
    db.execute("SET app.tenant = 'acme'")
    db.execute("INSERT INTO mt VALUES (2, 'acme', 'ticket two of acme')")
    db.execute("UPDATE mt SET body = 'ticket one of acme, edited' WHERE id = 1")
    with psycopg.connect(db_url, autocommit=True) as worker:  # its own session, no tenant
        worker.execute("CALL rag.process_queue('mt')")
    broken = db.execute("SELECT broken FROM rag.pipelines WHERE name = 'mt'").fetchone()[0]
    # A loud failure (the pipeline broken, saying why), and no chunk lost meanwhile.
    assert broken is not None and "forced" in broken, (
        "rows hidden from the owner by its forced policy lost their chunks silently")
    assert db.execute("SELECT count(*) FROM rag.mt_chunks WHERE document_id = '1'"
                      ).fetchone()[0] > 0
    db.execute("ALTER TABLE mt NO FORCE ROW LEVEL SECURITY")  # the repair it names
    assert db.execute("SELECT broken FROM rag.pipelines WHERE name = 'mt'").fetchone() == (
        None,)
    process(db, "mt")
    assert problems(db, "mt", "mt") == []


def test_a_serializable_database_default_never_fails_a_users_commit(srv, db_url):
    """ATTACK: the database's default_transaction_isolation is serializable (a common
    setting), so rag.process_queue's transactions are SERIALIZABLE too. A user's
    transaction reads the chunks (as rag.search does) and updates a source row; a worker
    meanwhile reads source rows and writes chunks, and commits first. The rw-dependency
    cycle user -> worker -> user makes PostgreSQL cancel the USER's commit (40001,
    'Canceled on identification as a pivot'). With the worker in READ COMMITTED the same
    user transaction commits."""
    db = srv
    dbname = db.info.dbname
    db.execute("CREATE TABLE z (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO z VALUES (1, 'ticket one'), (2, 'ticket two')")
    db.execute("SELECT rag.create_pipeline('z', 'z', 'body', embedder => 'srv')")
    process(db, "z")
    db.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_isolation = serializable')
    try:
        db.execute("UPDATE z SET body = 'ticket one, second version' WHERE id = 1")
        with psycopg.connect(db_url) as user, \
                psycopg.connect(db_url, autocommit=True) as worker:
            user.execute("SELECT count(*) FROM rag.z_chunks").fetchone()
            user.execute("UPDATE z SET body = 'ticket two, second version' WHERE id = 2")
            worker.execute("CALL rag.process_queue('z')")
            user.commit()  # raises SerializationFailure when the attack succeeds
    finally:
        db.execute(f'ALTER DATABASE "{dbname}" RESET default_transaction_isolation')
    process(db, "z")
    assert problems(db, "z", "z") == []


def test_sync_claims_of_one_transaction_are_bounded(srv, db_url):
    """ATTACK: a sync pipeline and one transaction that writes 100 rows per statement, three
    times (an ORM's batched load). Each statement's sync processing claims its documents
    with pg_try_advisory_xact_lock (queue.py::claim_documents), one entry of the server's
    shared lock table per row, held until the writer commits; sync_max_rows bounds a
    statement, nothing bounds the transaction. Measured on a server with 100 connections:
    the 144th statement of such a transaction finds the lock table full (14,300 claims;
    'out of shared memory'), and every other session then competes for the last slots
    (new connections fail with FATAL: out of shared memory). The claims one transaction
    holds must stay within sync_max_rows."""
    db = srv
    db.execute("CREATE TABLE s (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('s', 's', 'body', embedder => 'srv', mode => 'sync')")
    with psycopg.connect(db_url) as writer:
        for start in (1, 101, 201):
            writer.execute("INSERT INTO s SELECT g, 'ticket ' || g FROM generate_series("
                           "%s::int, %s::int + 99) AS g", (start, start))
        claims = writer.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
            " AND locktype = 'advisory'").fetchone()[0]
        writer.commit()
    process(db, "s")
    assert problems(db, "s", "s") == []
    assert claims <= 100, f"one transaction holds {claims} lock-table entries for its claims"


def test_an_unlogged_source_emptied_by_crash_recovery_keeps_no_chunks(srv):
    """ATTACK: an UNLOGGED source. The server crashes (immediate stop) and recovery empties
    the table, with no TRUNCATE trigger and no event: nothing would ask pgask to check the
    table, so the chunks of rows that no longer exist would stay. Unlogged sources are
    refused, and a source made unlogged breaks its pipeline (until SET LOGGED)."""
    db = srv
    db.execute("CREATE UNLOGGED TABLE ul (id int PRIMARY KEY, body text)")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="unlogged"):
        db.execute("SELECT rag.create_pipeline('ul', 'ul', 'body', embedder => 'srv')")
    db.execute("CREATE TABLE lg (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO lg VALUES (1, 'ticket one')")
    db.execute("SELECT rag.create_pipeline('lg', 'lg', 'body', embedder => 'srv')")
    process(db, "lg")
    db.execute("ALTER TABLE lg SET UNLOGGED")
    assert "unlogged" in db.execute("SELECT broken FROM rag.pipelines WHERE name = 'lg'"
                                    ).fetchone()[0]
    db.execute("ALTER TABLE lg SET LOGGED")
    assert db.execute("SELECT broken FROM rag.pipelines WHERE name = 'lg'").fetchone() == (
        None,)
    process(db, "lg")
    assert problems(db, "lg", "lg") == []


# --- attacks that held: regression tests ------------------------------------------------------

WRITE_FORMS = {
    "merge": (
        "CREATE TABLE c (id int PRIMARY KEY, body text);"
        " INSERT INTO c VALUES (1, 'ticket a'), (2, 'ticket b')",
        ["MERGE INTO c USING (VALUES (1, 'ticket a2'), (3, 'ticket c'), (2, NULL)) AS v (id, b)"
         " ON c.id = v.id WHEN MATCHED AND v.b IS NULL THEN DELETE"
         " WHEN MATCHED THEN UPDATE SET body = v.b"
         " WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.b)"]),
    "merge_moving_partitions": (
        "CREATE TABLE c (id int PRIMARY KEY, body text) PARTITION BY RANGE (id);"
        " CREATE TABLE c_1 PARTITION OF c FOR VALUES FROM (0) TO (10);"
        " CREATE TABLE c_2 (body text, dropped int, id int NOT NULL);"  # another layout
        " ALTER TABLE c_2 DROP COLUMN dropped;"
        " ALTER TABLE c ATTACH PARTITION c_2 FOR VALUES FROM (10) TO (100);"
        " INSERT INTO c VALUES (1, 'ticket a'), (2, 'ticket b')",
        ["MERGE INTO c USING (VALUES (1, 'ticket a2', 11), (3, 'ticket c', 3), (2, NULL, 2))"
         " AS v (id, b, n) ON c.id = v.id WHEN MATCHED AND v.b IS NULL THEN DELETE"
         " WHEN MATCHED THEN UPDATE SET body = v.b, id = v.n"
         " WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.b)",
         "UPDATE c SET id = id - 10 WHERE id = 11"]),
    "writable_ctes_on_the_source": (
        "CREATE TABLE c (id int PRIMARY KEY, body text);"
        " INSERT INTO c VALUES (1, 'ticket a'), (2, 'ticket b')",
        ["WITH a AS (INSERT INTO c VALUES (3, 'ticket c') RETURNING id),"
         " b AS (UPDATE c SET body = 'ticket b2' WHERE id = 2 RETURNING id),"
         " d AS (DELETE FROM c WHERE id = 1 RETURNING id) SELECT 1"]),
    "foreign_key_cascades": (
        "CREATE TABLE cparent (id int PRIMARY KEY);"
        " INSERT INTO cparent SELECT generate_series(1, 5);"
        " CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES cparent ON DELETE CASCADE"
        " ON UPDATE CASCADE, body text);"
        " INSERT INTO c SELECT g, g, 'ticket ' || g FROM generate_series(1, 5) g",
        ["DELETE FROM cparent WHERE id <= 2", "UPDATE cparent SET id = 50 WHERE id = 3",
         "TRUNCATE cparent CASCADE"]),
    "on_conflict": (
        "CREATE TABLE c (id int PRIMARY KEY, body text); INSERT INTO c VALUES (1, 'ticket a')",
        ["INSERT INTO c VALUES (1, 'ticket a2'), (2, 'ticket b')"
         " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
         "INSERT INTO c VALUES (1, 'never written') ON CONFLICT DO NOTHING",
         "UPDATE c SET body = body WHERE false"]),
    "savepoints_rolled_back": (
        "CREATE TABLE c (id int PRIMARY KEY, body text); INSERT INTO c VALUES (1, 'ticket a')",
        ["BEGIN; INSERT INTO c VALUES (2, 'ticket b'); SAVEPOINT s;"
         " UPDATE c SET body = 'ticket never committed' WHERE id = 1; DELETE FROM c WHERE id = 2;"
         " ROLLBACK TO SAVEPOINT s; INSERT INTO c VALUES (3, 'ticket c'); COMMIT",
         "DO $$ BEGIN INSERT INTO c VALUES (4, 'ticket d'); RAISE EXCEPTION 'x';"
         " EXCEPTION WHEN others THEN NULL; END $$"]),
    "instead_of_view_and_rule": (
        "CREATE TABLE c (id int PRIMARY KEY, body text); CREATE VIEW cv AS SELECT * FROM c;"
        " CREATE FUNCTION cv_insert() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO c VALUES (new.id, new.body); RETURN new; END$$;"
        " CREATE TRIGGER cv_insert INSTEAD OF INSERT ON cv FOR EACH ROW"
        " EXECUTE FUNCTION cv_insert();"
        " CREATE TABLE c2 (id int, body text);"
        " CREATE RULE also_c AS ON INSERT TO c2 DO ALSO INSERT INTO c VALUES (new.id + 10,"
        " new.body)",
        ["INSERT INTO cv SELECT g, 'ticket ' || g FROM generate_series(1, 3) g",
         "INSERT INTO c2 SELECT g, 'ticket ' || g FROM generate_series(1, 3) g"]),
    "generated_identity_truncate_restart": (
        "CREATE TABLE c (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, raw text,"
        " body text GENERATED ALWAYS AS (upper(raw)) STORED)",
        ["INSERT INTO c (raw) VALUES ('ticket a'), ('ticket b')",
         "UPDATE c SET raw = 'ticket c' WHERE id = 1",
         "TRUNCATE c RESTART IDENTITY", "INSERT INTO c (raw) VALUES ('ticket after')"]),
    "copy_from": (
        "CREATE TABLE c (id int PRIMARY KEY, body text)",
        ["COPY c FROM PROGRAM 'printf \"1\\tticket a\\n2\\tticket b\\n\"'"]),
}


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("form", WRITE_FORMS, ids=list(WRITE_FORMS))
def test_write_forms_end_in_step(srv, form, mode):
    """HELD: MERGE (also moving rows between partitions of different physical layouts),
    writable CTEs touching the source three times in one statement, foreign-key cascades
    (ON DELETE, ON UPDATE, TRUNCATE ... CASCADE), ON CONFLICT DO UPDATE/NOTHING, an UPDATE
    changing nothing, savepoints and plpgsql exception blocks rolled back, INSTEAD OF
    triggers and rules writing the source, generated and identity columns with TRUNCATE
    RESTART IDENTITY, COPY: every write is captured and the chunks end in step."""
    db = srv
    setup, writes = WRITE_FORMS[form]
    db.execute(setup)
    db.execute(f"SELECT rag.create_pipeline('c', 'c', 'body', embedder => 'srv',"
               f" mode => '{mode}')")
    process(db, "c")
    for statement in writes:
        db.execute(statement)
    process(db, "c")
    assert problems(db, "c", "c") == []


KEY_EDGES = {
    # key type, rows, then writes that change the key to an equal value of another text
    "numeric_scale": ("numeric", "(1.0, 'ticket a'), (2.50, 'ticket b')",
                      ["UPDATE c SET id = 1.00 WHERE id = 1", "UPDATE c SET id = 2.5 WHERE id = 2",
                       "UPDATE c SET body = body || ' edited'"]),
    "float_signed_zero_nan_infinity": (
        "double precision", "(0, 'ticket zero'), ('NaN', 'ticket nan'), ('Infinity', 'ticket inf'),"
        " ('-Infinity', 'ticket minus inf')",
        ["UPDATE c SET id = '-0' WHERE id = 0", "UPDATE c SET body = body || ' edited'"]),
    "interval_day_as_hours": ("interval", "('1 day', 'ticket a')",
                              ["UPDATE c SET id = '24 hours' WHERE id = '1 day'",
                               "UPDATE c SET body = 'ticket a edited'"]),
    "timestamptz_infinity": ("timestamptz", "('infinity', 'ticket a'), ('-infinity', 'ticket b')",
                             ["UPDATE c SET body = body || ' edited'"]),
    "text_quotes_newlines_json_like": (
        "text", "(E'a''b\\nc\\\\d\"e', 'ticket a'), ('[\"x\", \"y\"]', 'ticket json-like'),"
        " (' lead', 'ticket lead'), ('', 'ticket empty'), ('ünï \u2603', 'ticket unicode')",
        ["UPDATE c SET body = body || ' edited'", "DELETE FROM c WHERE id = ''"]),
    "padded_char": ("char(5)", "('ab', 'ticket a')", ["UPDATE c SET body = 'ticket b'"]),
}


@pytest.mark.parametrize("edge", KEY_EDGES, ids=list(KEY_EDGES))
def test_keys_whose_text_changes_while_equal_end_in_step(srv, edge):
    """HELD: a key updated to an equal value with another text (1.0 -> 1.00, 0 -> -0,
    '1 day' -> '24 hours'), NaN and infinities, text keys with quotes, newlines, JSON-like
    text and unicode, padded char(n): the old text's chunks go, the new one's come."""
    db = srv
    key_type, rows, writes = KEY_EDGES[edge]
    db.execute(f"CREATE TABLE c (id {key_type} PRIMARY KEY, body text)")
    db.execute(f"INSERT INTO c VALUES {rows}")
    db.execute("SELECT rag.create_pipeline('c', 'c', 'body', embedder => 'srv')")
    process(db, "c")
    for statement in writes:
        db.execute(statement)
    process(db, "c")
    assert problems(db, "c", "c", key="concat(id)") == []


def test_detach_partition_concurrently_is_followed(parted):
    """HELD: ALTER TABLE ... DETACH PARTITION CONCURRENTLY (two transactions, no
    transaction block): the detached rows' chunks go, later writes to the detached table
    are not captured."""
    db = parted
    db.execute("ALTER TABLE q DETACH PARTITION q_b CONCURRENTLY")
    db.execute("UPDATE q_b SET body = 'ticket no longer in the source'")
    process(db, "q")
    assert q_problems(db) == []


def test_pgask_install_never_makes_writers_wait(parted, db_url):
    """HELD: `pgask install` (an upgrade, re-applying every SQL file and binding every
    pipeline again) while a writer's transaction is open on the source: neither the install
    nor later writers wait."""
    db = parted
    errors: list = []
    with psycopg.connect(db_url) as holder:
        holder.execute("INSERT INTO q VALUES (3, 'a', 'ticket in an open transaction')")

        def run():
            try:
                with psycopg.connect(db_url) as conn:
                    conn.execute("SET lock_timeout = '5s'")
                    install(conn)
            except psycopg.Error as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        waits = [blocked(db_url, f"INSERT INTO q VALUES ({i}, 'b', 'ticket meanwhile')")
                 for i in range(10, 14)]
        thread.join(60)
        holder.commit()
    assert errors == [] and not any(waits)
    process(db, "q")
    assert q_problems(db) == []


def test_a_broken_pipeline_never_makes_unrelated_ddl_wait(srv, db_url):
    """HELD: while a pipeline is broken, every ALTER/CREATE TABLE in the database follows
    it again (rag._on_ddl); two sessions creating unrelated tables in open transactions do
    not wait for each other through rag.pipelines."""
    db = srv
    db.execute("CREATE TABLE bk (id int PRIMARY KEY, body text, extra text)")
    db.execute("SELECT rag.create_pipeline('bk', 'bk', 'body', embedder => 'srv',"
               " metadata => ARRAY['extra'])")
    db.execute("ALTER TABLE bk DROP COLUMN extra")
    assert db.execute("SELECT broken FROM rag.pipelines WHERE name = 'bk'").fetchone()[0]
    with psycopg.connect(db_url) as first:
        first.execute("CREATE TABLE unrelated_1 (x int)")
        waited = blocked(db_url, "BEGIN; CREATE TEMP TABLE unrelated_2 (x int);"
                                 " CREATE TABLE unrelated_3 (x int); ROLLBACK")
        first.rollback()
    db.execute("INSERT INTO bk VALUES (1, 'ticket written while broken')")
    assert not waited
