"""Fourth attack round (docs/security.md), against the fixes of the third: variants by an
attacker who did not write the code.

Each test passes when pgask is safe and fails when the attack works. Every role logs in as
itself. Probes record what ran as whom in sequences (setval survives any rollback)."""

from __future__ import annotations

import psycopg
import pytest


def _define(cast, name: str) -> None:
    cast.as_("admin", f"SELECT rag.create_pipeline('{name}', '{{t}}', 'body')")


SIGNATURE = ("RETURNS TABLE (document_id text, content text, title text, metadata text,"
             " problem text)")


def test_a_recorded_reader_of_another_signature_cannot_lend_its_name(cast):
    """Attack: rag._source_rows checks the recorded reader by OID, then calls it by *name*
    (p.reader::regproc) with arguments (text, text[]). rag._record_reader (executable by
    admins) accepts any SECURITY DEFINER function of the owner's in rag_source, whatever its
    arguments, and an admin who is a member of the owner may lend rag_source to it directly
    (rag._open_source_schema). So the admin records rag_source.f(integer) (SECURITY DEFINER,
    harmless, never changed) while rag_source.f(text, text[]) (SECURITY INVOKER, never
    recorded, not guarded by the event trigger) is what the call resolves to: it runs as
    pgask_owner inside rag._source_rows, for the admin, a worker or a sync writer, and
    reads rag.secrets."""
    _define(cast, "victim4")
    cast.db.execute("SELECT rag.set_secret('atk4_key', 'sk-atk4-secret')")
    conn = cast.conns["admin"]
    alice = cast.alice
    try:
        with conn.transaction():
            # (The loan names the one function it is for: the attack uses that name.)
            (name,) = conn.execute("SELECT rag._open_source_schema(%s::regrole, 'atk4')",
                                   (alice,)).fetchone()
            conn.execute(f"SET LOCAL ROLE {alice}")
            conn.execute(
                f"CREATE FUNCTION rag_source.{name}(x integer) {SIGNATURE} LANGUAGE sql"
                " SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
                " AS 'SELECT NULL::text, NULL::text, NULL::text, NULL::text, NULL::text"
                " WHERE false'")
            conn.execute(
                f"CREATE FUNCTION rag_source.{name}(mode text, keys text[]) {SIGNATURE}"
                " LANGUAGE plpgsql SECURITY INVOKER AS $e$ BEGIN"
                " PERFORM pg_catalog.setval('atk.as_owner', 41);"
                " RETURN QUERY SELECT current_user::text, s.value, NULL::text, NULL::text,"
                " NULL::text FROM rag.secrets AS s WHERE s.name = 'atk4_key'; END $e$")
            conn.execute("RESET ROLE")
            conn.execute("SELECT rag._record_reader('victim4', %s::regprocedure)",
                         (f"rag_source.{name}(integer)",))
    except psycopg.Error:
        pass  # refused: what the test wants
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cast.as_("admin", "SELECT value FROM rag.secrets")  # the admin may not read keys
    leaked = []
    for who in ("admin", "worker"):
        try:
            leaked += cast.as_(who, "SELECT document_id, content FROM"
                                    " rag._source_rows('victim4', 'keys', NULL)").fetchall()
        except psycopg.Error:
            pass
    cast.db.execute("DELETE FROM rag.secrets WHERE name = 'atk4_key'")
    assert ("pgask_owner", "sk-atk4-secret") not in leaked, \
        "the admin's SECURITY INVOKER overload ran as pgask_owner and read rag.secrets"
    assert cast.counter("as_owner") != 41, "code of the admin's ran as pgask_owner"


def test_a_worker_cannot_compute_and_hold_the_install_lock(cast):
    """Attack: the install lock's key is hashtextextended('install', salt) (pgask.install),
    salted so that "no other role can compute the key to hold it". rag._lock_key(what), which
    workers and admins may execute, is hashtextextended(what, salt): rag._lock_key('install')
    is the install lock's key. A worker holds it; `pgask install` then fails after 30 s."""
    (key,) = cast.as_("worker", "SELECT rag._lock_key('install')").fetchone()
    (install_key,) = cast.db.execute(
        "SELECT hashtextextended('install', hashtextextended(p.value, 0))"
        " FROM rag.private AS p WHERE p.key = 'lock_salt'").fetchone()
    worker = cast.conns["worker"]
    worker.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        with cast.db.transaction():
            (free,) = cast.db.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                      (install_key,)).fetchone()
    finally:
        worker.execute("SELECT pg_advisory_unlock_all()")
    assert key != install_key and free, "a worker computed and held pgask's install lock"
