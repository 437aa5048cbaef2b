"""Attacks by ordinary roles (docs/security.md): privileges of a source table reach its
chunks both ways, the answer log and feedback follow their readers, term statistics answer
only for chunk tables the caller may read, and stored API keys are usable but never
readable. Each test uses two or more roles that are not superusers."""

from __future__ import annotations

import secrets
import subprocess
import sys

import psycopg
import pytest


def _chunk_ids(db, roles, role, pipeline="memos"):
    """The chunk document ids `role` can read through the view, or None if it may not."""
    with roles.as_role(role):
        try:
            return sorted(r[0] for r in db.execute(
                f"SELECT DISTINCT document_id FROM rag.{pipeline}_chunks"))
        except psycopg.errors.InsufficientPrivilege:
            return None


def _search(db, roles, role, query="Falcon launch", pipeline="memos"):
    with roles.as_role(role):
        try:
            return sorted({r[0] for r in db.execute(
                "SELECT document_id FROM rag.search(%s, 10, pipeline => %s)",
                (query, pipeline))})
        except psycopg.errors.InsufficientPrivilege:
            return None


@pytest.fixture
def memos(db):
    db.execute("CREATE TABLE memos (id int PRIMARY KEY, owner text, secret_note text,"
               " body text)")
    db.execute("INSERT INTO memos VALUES"
               " (1, 'a', 'x', 'The launch code for project Falcon is in the blue safe.'),"
               " (2, 'b', 'y', 'Project Falcon launch is delayed until the budget review.')")
    db.execute("SELECT rag.create_pipeline('memos', 'memos', 'body', mode => 'sync')")
    db.execute("CALL rag.process_queue('memos')")
    return db


# --- grants follow the source exactly ------------------------------------------------------

def test_grant_and_revoke_to_roles_and_public_reach_the_chunks(db, memos, roles):
    alice, bob = roles.make("alice"), roles.make("bob")
    assert _chunk_ids(db, roles, alice) is None
    db.execute(f"GRANT SELECT ON memos TO {alice}, {bob}")
    assert _chunk_ids(db, roles, alice) == ["1", "2"] == _chunk_ids(db, roles, bob)
    db.execute(f"REVOKE SELECT ON memos FROM {bob}")
    assert _chunk_ids(db, roles, bob) is None
    assert _search(db, roles, bob) is None
    assert _chunk_ids(db, roles, alice) == ["1", "2"]
    db.execute("GRANT SELECT ON memos TO PUBLIC")
    assert _chunk_ids(db, roles, bob) == ["1", "2"]
    db.execute("REVOKE SELECT ON memos FROM PUBLIC")
    assert _chunk_ids(db, roles, bob) is None
    db.execute(f"REVOKE ALL ON memos FROM {alice}")
    assert _chunk_ids(db, roles, alice) is None
    assert _search(db, roles, alice) is None


def test_column_privileges_must_cover_what_the_chunks_hold(db, memos, roles):
    partial, full = roles.make("partial"), roles.make("full")
    db.execute(f"GRANT SELECT (id, owner) ON memos TO {partial}")
    db.execute(f"GRANT SELECT (id, body) ON memos TO {full}")
    assert _chunk_ids(db, roles, partial) is None  # cannot read body: no chunk text
    assert _search(db, roles, partial) is None
    assert _chunk_ids(db, roles, full) == ["1", "2"]
    db.execute(f"REVOKE SELECT (body) ON memos FROM {full}")
    assert _chunk_ids(db, roles, full) is None
    db.execute(f"GRANT SELECT (body) ON memos TO {partial}")
    assert _chunk_ids(db, roles, partial) == ["1", "2"]


def test_owner_change_moves_chunk_access(db, memos, roles):
    old, new = roles.make("old_owner"), roles.make("new_owner")
    db.execute(f"ALTER TABLE memos OWNER TO {old}")
    assert _chunk_ids(db, roles, old) == ["1", "2"]
    db.execute(f"ALTER TABLE memos OWNER TO {new}")
    assert _chunk_ids(db, roles, old) is None
    assert _chunk_ids(db, roles, new) == ["1", "2"]


def test_rls_enable_force_disable_and_policies_reach_the_chunks(db, memos, roles):
    reader = roles.make("reader")
    owner = roles.make("owner")
    db.execute(f"GRANT SELECT ON memos TO {reader}")
    db.execute(f"ALTER TABLE memos OWNER TO {owner}")
    db.execute("ALTER TABLE memos ENABLE ROW LEVEL SECURITY")
    assert _chunk_ids(db, roles, reader) == []  # no policy: nothing visible
    assert _chunk_ids(db, roles, owner) == ["1", "2"]  # owners bypass unforced RLS
    db.execute("CREATE POLICY only_b ON memos USING (owner = 'b')")
    assert _chunk_ids(db, roles, reader) == ["2"]
    assert _search(db, roles, reader) == ["2"]
    db.execute("ALTER TABLE memos FORCE ROW LEVEL SECURITY")
    assert _chunk_ids(db, roles, owner) == ["2"]
    db.execute("DROP POLICY only_b ON memos")
    assert _chunk_ids(db, roles, reader) == []
    db.execute("CREATE POLICY only_a ON memos USING (owner = 'a')")
    assert _chunk_ids(db, roles, reader) == ["1"]
    db.execute("ALTER TABLE memos NO FORCE ROW LEVEL SECURITY")
    db.execute("ALTER TABLE memos DISABLE ROW LEVEL SECURITY")
    assert _chunk_ids(db, roles, reader) == ["1", "2"]


def test_writers_cannot_empty_or_delete_other_chunks(db, memos, roles):
    writer = roles.make("writer")
    db.execute(f"GRANT INSERT, UPDATE ON memos TO {writer}")
    with roles.as_role(writer):
        for call in ("SELECT rag._request_check('memos', 'all')",
                     "SELECT rag._reconcile('memos', 'all')",
                     "SELECT rag._queue_jobs('memos', '{1}', array_fill('x'::text, ARRAY[1000]),"
                     " now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(call)
        # Nor forge, read or drop captured writes: only the capture triggers write the inbox.
        for statement in ("INSERT INTO rag.inbox (pipeline, document_ids) VALUES ('memos', '{1}')",
                          "SELECT count(*) FROM rag.inbox",
                          "DELETE FROM rag.inbox"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(statement)
        # Its own writes still index (the triggers run without EXECUTE checks).
        db.execute("INSERT INTO memos VALUES (3, 'c', 'z', 'Falcon has a new launch date.')")
    assert db.execute("SELECT count(DISTINCT document_id) FROM rag.memos_chunks"
                      ).fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM rag.queue").fetchone()[0] == 0



def test_schema_usage_must_cover_the_source(db, roles):
    owner, reader = roles.make("owner"), roles.make("reader")
    db.execute(f"CREATE SCHEMA private_notes AUTHORIZATION {owner}")
    db.execute("CREATE TABLE private_notes.memos (id int PRIMARY KEY, body text)")
    db.execute(f"ALTER TABLE private_notes.memos OWNER TO {owner}")
    db.execute("INSERT INTO private_notes.memos VALUES (1, 'Project Falcon launch notes.')")
    db.execute("SELECT rag.create_pipeline('memos', 'private_notes.memos', 'body')")
    db.execute("CALL rag.process_queue('memos')")
    db.execute(f"GRANT SELECT ON private_notes.memos TO {reader}")
    assert _chunk_ids(db, roles, reader) is None  # the table, but not its schema
    db.execute(f"GRANT USAGE ON SCHEMA private_notes TO {reader}")
    assert _chunk_ids(db, roles, reader) == ["1"]
    assert _search(db, roles, reader) == ["1"]
    db.execute(f"REVOKE USAGE ON SCHEMA private_notes FROM {reader}")
    assert _chunk_ids(db, roles, reader) is None
    assert _search(db, roles, reader) is None


def test_a_connect_only_role_cannot_delay_search_or_the_worker(db, memos, roles, db_url):
    """A role with nothing but CONNECT leaves GRANT and REVOKE open in its transaction (no-op
    ones, and ones on its own objects): searches and the worker never wait for it
    (lock_timeout), because pgask's event triggers touch only pipelines whose source's
    privileges changed, and GRANT and REVOKE lock no chunk table."""
    nobody = roles.make("nobody")
    db.execute(f"GRANT CREATE ON SCHEMA public TO {nobody}")
    db.execute("INSERT INTO memos VALUES (3, 'c', 'z', 'Falcon needs a new launch window.')")
    with psycopg.connect(db_url) as other:
        other.execute(f"SET ROLE {nobody}")
        other.execute("CREATE TABLE public.mine (x int)")
        other.execute(f"REVOKE SELECT ON pg_catalog.pg_class FROM {nobody}")
        other.execute("GRANT SELECT ON public.mine TO PUBLIC")
        other.execute("REVOKE ALL ON public.mine FROM PUBLIC")
        other.execute("COMMENT ON TABLE public.mine IS 'held open'")
        # Its transaction stays open while others search and process.
        db.execute("SET lock_timeout = '300ms'")
        try:
            assert db.execute("SELECT count(*) FROM rag.search('Falcon launch', 5,"
                              " pipeline => 'memos')").fetchone()[0] > 0
            db.execute("CALL rag.process_queue('memos')")
            db.execute("UPDATE memos SET body = 'Falcon launch moved.' WHERE id = 1")
            db.execute("CALL rag.process_queue('memos')")
        finally:
            db.execute("RESET lock_timeout")
        other.rollback()
    db.execute("DROP TABLE IF EXISTS public.mine")


def test_ddl_of_others_is_never_failed_by_pgask(db, roles):
    """A source owner renames her key's domain and her columns (to names with % in them) on
    a source with row-level security, and others GRANT and REVOKE: every command succeeds,
    every write succeeds, `pgask install` succeeds, and the pipeline follows."""
    from pgask.install import install

    owner, reader = roles.make("owner"), roles.make("reader")
    db.execute(f"CREATE SCHEMA owned AUTHORIZATION {owner}")
    with roles.as_role(owner):
        db.execute("CREATE DOMAIN owned.dkey AS integer CHECK (VALUE > 0)")
        db.execute("CREATE TABLE owned.memos (id owned.dkey PRIMARY KEY, body text)")
        db.execute("INSERT INTO owned.memos VALUES (1, 'Falcon launch notes.')")
        db.execute("ALTER TABLE owned.memos ENABLE ROW LEVEL SECURITY")
        db.execute("CREATE POLICY everyone ON owned.memos USING (true)")
        db.execute(f"GRANT USAGE ON SCHEMA owned TO {reader}")
        db.execute(f"GRANT SELECT ON owned.memos TO {reader}")
    db.execute("SELECT rag.create_pipeline('memos', 'owned.memos', 'body')")
    db.execute("CALL rag.process_queue('memos')")
    with roles.as_role(owner):
        db.execute("ALTER DOMAIN owned.dkey RENAME TO renamed_key")
        db.execute('ALTER TABLE owned.memos RENAME COLUMN body TO "b%sdy"')
        db.execute('ALTER TABLE owned.memos RENAME COLUMN id TO "i%d"')
        db.execute(f"REVOKE SELECT ON owned.memos FROM {reader}")
        db.execute(f"GRANT SELECT ON owned.memos TO {reader}")
        db.execute('INSERT INTO owned.memos VALUES (2, \'Falcon moved.\')')
        db.execute('UPDATE owned.memos SET "b%sdy" = \'Falcon launch notes, edited.\'')
        db.execute('DELETE FROM owned.memos WHERE "i%d" = 1')
    db.execute(f"GRANT SELECT ON pg_catalog.pg_class TO {reader}")
    db.execute(f"REVOKE SELECT ON pg_catalog.pg_class FROM {reader}")
    install(db)
    db.execute("CALL rag.process_queue('memos')")
    assert db.execute("SELECT broken FROM rag.pipeline_status WHERE pipeline = 'memos'"
                      ).fetchone() == (None,)
    assert db.execute("SELECT document_id, content FROM rag.memos_chunks").fetchall() == [
        ("2", "Falcon launch notes, edited.")]
    assert _search(db, roles, reader, "Falcon launch") == ["2"]


# --- term statistics ------------------------------------------------------------------------

def test_term_statistics_answer_only_for_readable_chunk_tables(db, memos, roles):
    outsider, reader = roles.make("outsider"), roles.make("reader")
    db.execute(f"GRANT SELECT ON memos TO {reader}")
    for role, expected in ((outsider, 0), (reader, 1)):
        with roles.as_role(role):
            rows = db.execute("SELECT * FROM rag._bm25_idf('memos_chunks_1', ARRAY['falcon'])"
                              ).fetchall()
            assert len(rows) == expected, role
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("SELECT * FROM rag.bm25_terms")
            visible = db.execute("SELECT count(*) FROM rag.bm25_term_stats").fetchone()[0]
            assert (visible > 0) == bool(expected)
    # Its keyword search learns nothing either: no statistics, so no rows (or no access).
    with roles.as_role(outsider):
        try:
            rows = db.execute("SELECT * FROM rag.search('falcon', 5, mode => 'keyword',"
                              " pipeline => 'memos')").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            rows = []
    assert rows == []


# --- the answer log -------------------------------------------------------------------------

@pytest.fixture
def asked(db, memos, roles):
    """alice and bob each asked a question; carol audits; returns (alice, bob, carol, ids)."""
    alice, bob = roles.make("alice"), roles.make("bob")
    carol = roles.make("carol", "GRANT pgask_auditor TO {role}")
    db.execute(f"GRANT SELECT ON memos TO {alice}, {bob}")
    ids = {}
    for role, question in ((alice, "Where is the launch code?"),
                           (bob, "What is the lunch menu on Mars?")):
        with roles.as_role(role):
            ids[role] = db.execute("SELECT rag.answer(%s, pipeline => 'memos')",
                                   (question,)).fetchone()[0]["answer_id"]
    return alice, bob, carol, ids


def test_each_role_sees_its_own_log_rows_and_the_auditor_all(db, asked, roles):
    alice, bob, carol, ids = asked
    for role, expected in ((alice, {ids[alice]}), (bob, {ids[bob]}),
                           (carol, {ids[alice], ids[bob]})):
        with roles.as_role(role):
            seen = {r[0] for r in db.execute("SELECT id FROM rag.answer_log")}
            assert seen == expected, role
            unanswered = {r[0] for r in db.execute("SELECT question FROM rag.top_unanswered")}
            daily = db.execute("SELECT coalesce(sum(answers), 0) FROM rag.answers_daily"
                               ).fetchone()[0]
            assert daily == len(expected)
            if role == alice:
                assert unanswered <= {"where is the launch code?"}
            usage = db.execute("SELECT coalesce(sum(answers), 0) FROM rag.document_usage"
                               ).fetchone()[0]
            assert usage <= len(expected)
    names = {r[0] for r in db.execute("SELECT asked_by FROM rag.answer_log")}
    assert names == {alice, bob}


def test_log_rows_cannot_be_forged(db, asked, roles):
    alice, bob, _, _ = asked
    outsider = roles.make("outsider")
    chunk = db.execute("SELECT min(id) FROM rag.memos_chunks").fetchone()[0]
    entry = ('{"pipeline": "memos", "question": "q", "answer": "forged", "mode": "extractive",'
             f' "grounded": true, "cited_chunk_ids": [{chunk}]}}')
    with roles.as_role(alice):
        # Another role's row: asked_by is always the caller.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("INSERT INTO rag.answer_log (asked_by, pipeline, question, answer, mode,"
                       " grounded) VALUES (%s, 'memos', 'q', 'a', 'extractive', true)", (bob,))
        with pytest.raises((psycopg.errors.InsufficientPrivilege,
                            psycopg.errors.CheckViolation)):
            db.execute("SELECT rag._log_answer(%s::jsonb)",
                       (entry.replace('"q"', '"%s"' % ("x" * 20000)),))
        for statement in ("UPDATE rag.answer_log SET answer = 'changed'",
                          "DELETE FROM rag.answer_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(statement)
    # A role that cannot read the chunks cannot log an answer citing them.
    with roles.as_role(outsider), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT rag._log_answer(%s::jsonb)", (entry,))
    assert db.execute("SELECT count(*) FROM rag.answer_log WHERE answer <> 'forged'"
                      ).fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM rag.answer_log WHERE answer = 'forged'"
                      ).fetchone()[0] == 0


def test_the_log_takes_rows_only_from_the_answer_path(db, asked, roles):
    """A role that may read the chunks still cannot write log rows of its own making: a row
    needs a one-time token only rag.answer's code holds; and each role logs at most
    answer_log_max_per_minute answers a minute (the answer is returned, its logging
    skipped, and the answer says so)."""
    alice, _, _, _ = asked
    chunk = db.execute("SELECT min(id) FROM rag.memos_chunks").fetchone()[0]
    entry = ('{"pipeline": "memos", "question": "q", "answer": "forged", "mode": "extractive",'
             f' "grounded": true, "cited_chunk_ids": [{chunk}], "token": "guess"}}')
    with roles.as_role(alice):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("INSERT INTO rag.answer_log (pipeline, question, answer, mode,"
                       " grounded) VALUES ('memos', 'q', 'forged', 'extractive', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("SELECT rag._log_answer(%s::jsonb)", (entry,))
    db.execute("UPDATE rag.settings SET value = '2' WHERE key = 'answer_log_max_per_minute'")
    notes = []
    with roles.as_role(alice):
        for _ in range(2):
            (answer,) = db.execute("SELECT rag.answer('Where is the launch code?',"
                                   " pipeline => 'memos')").fetchone()
            notes.append(answer["log"])
    assert notes == ["logged", "skipped: at most 2 answers a minute are logged per role"
                     " (rag.settings answer_log_max_per_minute)"]
    assert db.execute("SELECT count(*) FROM rag.answer_log WHERE answer = 'forged'"
                      ).fetchone()[0] == 0


def test_feedback_only_on_own_answers_and_no_existence_oracle(db, asked, roles):
    alice, bob, carol, ids = asked
    with roles.as_role(alice):
        assert db.execute("SELECT rag.feedback(%s, true)", (ids[alice],)).fetchone()[0] > 0
        errors = []
        for answer_id in (ids[bob], 10 ** 12):
            with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
                db.execute("SELECT rag.feedback(%s, false)", (answer_id,))
            errors.append(str(caught.value).replace(str(answer_id), "N"))
        assert errors[0] == errors[1]
        assert "does not exist or is not yours" in errors[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("INSERT INTO rag.answer_feedback (answer_id, helpful, given_by)"
                       " VALUES (%s, false, %s)", (ids[bob], bob))
        totals = db.execute("SELECT answer_id FROM rag.answer_feedback_totals").fetchall()
        assert totals == [(ids[alice],)]
    with roles.as_role(bob):
        assert db.execute("SELECT count(*) FROM rag.answer_feedback_totals").fetchone()[0] == 0
    with roles.as_role(carol):
        assert db.execute("SELECT count(*) FROM rag.answer_feedback").fetchone()[0] == 1


# --- keys -----------------------------------------------------------------------------------

def _all_text(db) -> str:
    """Everything pgask's tables and views hold, as text."""
    tables = [r[0] for r in db.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'rag' AND c.relkind IN ('r', 'v') AND c.relname <> 'secrets'")]
    return "\n".join(str(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)


def _fragments(key: str) -> list[str]:
    return [key, key[:10], key[-6:], key[3:12], key[-10:-4]]


def test_readers_use_stored_keys_without_ever_seeing_them(
        db, memos, roles, embedding_server, postgresql_proc):
    key = "sk-" + secrets.token_hex(20)
    reader = roles.make("reader", "GRANT pgask_reader TO {role}")
    plain = roles.make("plain")
    db.execute(f"GRANT SELECT ON memos TO {reader}, {plain}")
    dsn = f"postgresql://{db.info.user}@{db.info.host}:{db.info.port}/{db.info.dbname}"
    # A server configured to log every statement with its parameters: the CLI turns that off
    # for its own statement where it may (a superuser may; see docs/security.md).
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_parameter_max_length_on_error = -1")

    def secret_set(value: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pgask.cli", "--database-url", dsn,
                               "secret", "set", "remote", "--base-url", embedding_server.url],
                              input=value, text=True, capture_output=True)

    done = secret_set(key + "\n")
    assert done.returncode == 0, done.stderr
    assert db.execute("SELECT value FROM rag.secrets").fetchone()[0] == key
    # A failing call logs no key either (a name rag.set_secret refuses).
    refused = subprocess.run([sys.executable, "-m", "pgask.cli", "--database-url", dsn,
                              "secret", "set", "bad name!"], input=key, text=True,
                             capture_output=True)
    assert refused.returncode != 0 and "name" in refused.stderr
    assert key not in refused.stderr + refused.stdout + done.stdout + done.stderr
    db.execute(f"ALTER DATABASE {db.info.dbname} RESET ALL")
    db.execute("SELECT rag.create_embedder('remote', 'openai', 'fake', 384, %s,"
               " 'secret:remote')", (embedding_server.url,))
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo', %s, 'secret:remote')",
               (embedding_server.url,))
    db.execute("SELECT rag.reembed('memos', 'remote')")
    db.execute("CALL rag.process_queue('memos')")
    outputs = []
    notices = []
    db.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    with roles.as_role(reader):
        rows = db.execute("SELECT document_id FROM rag.search('Falcon launch', 2, mode =>"
                          " 'vector', pipeline => 'memos')").fetchall()
        assert rows
        answer = db.execute("SELECT rag.answer('Where is the launch code?', pipeline =>"
                            " 'memos', model => 'echo', options => '{\"guard\": \"flag\"}')"
                            ).fetchone()[0]
        assert answer["mode"] in ("generated", "no_answer"), answer
        outputs.append(str(answer))
        for attempt in ("SELECT value FROM rag.secrets", "SELECT rag._secret('remote')",
                        "SELECT rag._use_secret('remote')::text"):
            try:
                outputs.append(str(db.execute(attempt).fetchall()))
            except psycopg.Error as exc:
                outputs.append(str(exc))
        # A provider that echoes fragments of the key back: errors, warnings, the log.
        embedding_server.fail_next({"status": 401, "times": 10, "message":
                                    f"Incorrect API key provided: {key[:7]}...{key[-4:]}"
                                    f" ({key[3:11]}) {key}"})
        for call in ("SELECT rag.search('other question', 2, mode => 'vector',"
                     " pipeline => 'memos')",
                     "SELECT rag.answer('Another question?', pipeline => 'memos',"
                     " model => 'echo')"):
            try:
                outputs.append(str(db.execute(call).fetchall()))
            except psycopg.Error as exc:
                outputs.append(str(exc) + str(exc.diag.message_detail)
                               + str(exc.diag.message_hint) + str(exc.diag.context))
    embedding_server.reset()
    with roles.as_role(plain), pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        db.execute("SELECT rag.search('Falcon', 2, mode => 'vector', pipeline => 'memos')")
    assert "pgask_reader" in str(caught.value)
    db.execute("INSERT INTO memos VALUES (5, 'e', 'q', 'Queued while the key is rejected.')")
    embedding_server.fail_next({"status": 401, "times": 10,
                                "message": f"bad key {key[:9]}...{key[-5:]}"})
    db.execute("CALL rag.process_queue('memos', max_seconds => 0)")
    embedding_server.reset()
    outputs.append(_all_text(db))
    outputs.append(str(db.execute("SELECT query FROM pg_stat_activity").fetchall()))
    outputs.extend(notices)
    logfile = getattr(postgresql_proc, "logfile", None)
    if logfile:  # the throwaway cluster's server log (not available with PGASK_TEST_DSN)
        with open(logfile, encoding="utf-8", errors="replace") as log:
            outputs.append(log.read())
    found = [(fragment, i) for i, text in enumerate(outputs) for fragment in _fragments(key)
             if fragment in text]
    assert not found
