"""Third attack round (docs/security.md), by an attacker who did not write the code: ordinary
roles, pipeline admins and workers try to gain rights through pgask by paths the hostile
matrix and the first two rounds do not cover.

Each test passes when pgask is safe and fails when the attack works. Every role logs in as
itself. Probes record what ran as whom in sequences (setval survives any rollback)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest


def _lend(cast, who: str, to: str) -> None:
    """`who` calls rag._open_source_schema for role `to` with the loan trigger made immediate:
    the trigger fires at the INSERT into rag.source_schema_loans (and deletes the loan) before
    the GRANT that follows it, so nothing is left to take the grant back at commit."""
    conn = cast.conns[who]
    with conn.transaction():
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.execute("SELECT rag._open_source_schema(%s::regrole, 'loan')", (cast.names[to],))


@pytest.mark.parametrize("who", ["worker", "admin2"])
def test_a_worker_or_admin_cannot_lend_rag_source_for_good(cast, who):
    """Attack: rag._open_source_schema (SECURITY DEFINER, no check of the caller) is
    executable by every member of pgask_worker and pgask_admin (990: GRANT EXECUTE ON ALL
    ROUTINES). With `SET CONSTRAINTS ALL IMMEDIATE` the deferred trigger that should take the
    loan back at commit fires at the INSERT, before the GRANT: any role (here mallory, a
    nobody) keeps USAGE and CREATE on pgask_owner's schema rag_source."""
    try:
        _lend(cast, who, "mallory")
    except psycopg.errors.InsufficientPrivilege:
        pass
    assert cast.rag_source_privileges("mallory") == (False, False), \
        f"{who} gave mallory USAGE/CREATE on rag_source for good"


def test_a_worker_cannot_create_in_rag_source(cast):
    """Attack: even with the trigger left deferred, a worker lends itself CREATE on rag_source
    for its own transaction and plants a function there that outlives the loan (pgask_owner's
    schema, where only readers made by rag._bind_source belong)."""
    conn = cast.conns["worker"]
    try:
        with conn.transaction():
            conn.execute("SELECT rag._open_source_schema(%s::regrole, 'loan')",
                         (cast.names["worker"],))
            conn.execute("CREATE FUNCTION rag_source.planted() RETURNS int LANGUAGE sql"
                         " AS 'SELECT 1'")
    except psycopg.errors.InsufficientPrivilege:
        pass
    assert cast.db.execute("SELECT to_regprocedure('rag_source.planted()')").fetchone() == (None,)


EVIL = """
CREATE OR REPLACE FUNCTION rag_source.{reader}(mode text, keys text[])
RETURNS TABLE (document_id text, content text, title text, metadata text, problem text)
LANGUAGE plpgsql SECURITY INVOKER
AS $e$ BEGIN
    IF current_user = 'pgask_owner' THEN
        -- Reads what only pgask_owner may (the stored keys) and says so in the probe.
        PERFORM pg_catalog.setval('atk.as_owner',
            1 + (SELECT pg_catalog.count(*) FROM rag.secrets));
    END IF;
    RETURN;
END $e$
"""


def test_a_source_owner_lent_rag_source_cannot_run_her_code_as_pgask_owner(cast):
    """Attack: once alice holds CREATE on rag_source (lent for good by a worker, above), she
    may CREATE OR REPLACE her own reader. rag._source_rows checks the reader's digest
    (SECURITY DEFINER, settings, body) in one statement and calls it by name in the next: she
    flips it between its recorded definition and a SECURITY INVOKER body, and a call that
    falls between the check and the call runs her body as pgask_owner (current_user inside
    rag._source_rows), which reads rag.secrets and can replace any of pgask's functions."""
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    reader = db.execute("SELECT f.proname FROM rag.pipelines AS p"
                        " JOIN pg_proc AS f ON f.oid = p.reader"
                        " WHERE p.name = 'victim'").fetchone()[0]
    good = db.execute("SELECT pg_get_functiondef(p.reader) FROM rag.pipelines AS p"
                      " WHERE p.name = 'victim'").fetchone()[0]
    try:
        _lend(cast, "worker", "alice")
    except psycopg.errors.InsufficientPrivilege:
        pass
    stop = threading.Event()
    flips = []

    def flip() -> None:
        conn = cast.conns["alice"]
        while not stop.is_set():
            try:
                conn.execute(EVIL.format(reader=reader))
                conn.execute(good)
                flips.append(1)
            except psycopg.Error:
                return  # safe: she may not replace her reader

    flipper = threading.Thread(target=flip)
    flipper.start()
    worker = cast.conns["worker"]
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and cast.counter("as_owner") == 0:
            try:
                worker.execute("SELECT count(*) FROM rag._source_rows('victim', 'keys', NULL)")
            except psycopg.Error:
                pass
            if not flipper.is_alive():
                break
    finally:
        stop.set()
        flipper.join()
    assert cast.counter("as_owner") == 0, \
        f"her reader's body ran as pgask_owner (after {len(flips)} flips)"


def test_a_worker_cannot_break_or_drop_another_owners_pipeline(cast):
    """Attack: rag._mark_broken and rag._drop_pipeline_objects are SECURITY DEFINER, check no
    caller, and are executable by every member of pgask_worker: a worker (who may write only
    the queue, inbox, statistics and chunk tables) writes rag.pipelines.broken, and drops a
    pipeline's chunk tables, reader and capture triggers."""
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    worker = cast.conns["worker"]
    db = cast.db
    try:
        worker.execute("SELECT rag._mark_broken('victim', 'a worker says so')")
    except psycopg.errors.InsufficientPrivilege:
        pass
    assert db.execute("SELECT broken FROM rag.pipelines WHERE name = 'victim'"
                      ).fetchone() == (None,), "a worker marked her pipeline broken"
    try:
        worker.execute("SELECT rag._drop_pipeline_objects('victim')")
    except psycopg.errors.InsufficientPrivilege:
        pass
    assert db.execute("SELECT to_regclass('rag.victim_chunks')").fetchone()[0] is not None, \
        "a worker dropped her pipeline's chunk table (and its reader, triggers and row)"


# Every way a reader's owner may change a function she owns, without a loan of rag_source
# (and, for the body, with one): a change committed between rag._source_rows' check and its
# call would run as pgask_owner, so none is allowed.
READER_CHANGES = {
    "security invoker": "ALTER FUNCTION rag_source.{r}(text, text[]) SECURITY INVOKER",
    "a setting": "ALTER FUNCTION rag_source.{r}(text, text[]) SET search_path = {s}, pg_catalog",
    "its name": "ALTER FUNCTION rag_source.{r}(text, text[]) RENAME TO {r}_x",
    "its schema": "ALTER FUNCTION rag_source.{r}(text, text[]) SET SCHEMA {s}",
    "through ALTER ROUTINE": "ALTER ROUTINE rag_source.{r}(text, text[]) SECURITY INVOKER",
}


@pytest.mark.parametrize("change", READER_CHANGES, ids=list(READER_CHANGES))
def test_the_owner_cannot_change_her_reader(cast, change):
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    (reader,) = db.execute("SELECT f.proname FROM rag.pipelines AS p"
                           " JOIN pg_proc AS f ON f.oid = p.reader"
                           " WHERE p.name = 'victim'").fetchone()
    statement = READER_CHANGES[change].replace("{r}", reader).format(s=cast.schema)
    # Alone she may not even name it (no USAGE on rag_source)...
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cast.conns["alice"].execute(statement)
    # ...nor while an admin who has her rights lends her the schema, as a bind does.
    admin = cast.conns["admin"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be changed"):
        with admin.transaction():
            admin.execute("SELECT rag._open_source_schema(%s::regrole, 'loan')", (cast.alice,))
            admin.execute(f"SET LOCAL ROLE {cast.alice}")
            admin.execute(statement)
    assert db.execute("SELECT rag._reader_problem('victim')").fetchone() == (None,)


def test_a_lent_schema_does_not_let_the_owner_replace_her_reader(cast):
    """An admin who is a member of alice may lend her rag_source for a transaction (as
    rag._bind_source does); her reader's body still cannot be replaced in it."""
    db = cast.db
    cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}', 'body')")
    reader = db.execute("SELECT f.proname FROM rag.pipelines AS p"
                        " JOIN pg_proc AS f ON f.oid = p.reader"
                        " WHERE p.name = 'victim'").fetchone()[0]
    admin = cast.conns["admin"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot be changed"):
        with admin.transaction():
            admin.execute("SELECT rag._open_source_schema(%s::regrole, 'loan')", (cast.alice,))
            admin.execute(f"SET LOCAL ROLE {cast.alice}")
            admin.execute(EVIL.format(reader=reader))
    assert db.execute("SELECT rag._reader_problem('victim')").fetchone() == (None,)
    assert cast.rag_source_privileges("alice") == (False, False)


def test_a_pipelines_sql_cannot_end_its_readers_body(cast):
    """The reader's body is dollar-quoted: SQL holding the closing tag would end it there and
    run the rest as whoever binds the pipeline next (another admin, a superuser)."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"\$pgask_reader\$"):
        cast.as_("admin", "SELECT rag.create_pipeline('victim', '{t}',"
                          " $q$body || '$pgask_reader$; SELECT 1; $pgask_reader$'$q$)")
    assert cast.db.execute("SELECT count(*) FROM rag.pipelines WHERE name = 'victim'"
                           ).fetchone() == (0,)
