"""Thirtieth attack round: the HTTP entry points (schema rag_api, the web user of
request.jwt.claims), the dashboard grant, `pgask ingest`'s canonical keys, the clients' writes
and the shared model process's numpy-free decoding. Each test passes when pgask keeps its
promise and fails when the attack works."""

from __future__ import annotations

import json
import math
import struct

import psycopg
import pytest
from test_attack_shared_model import _frame, answered_by_fake

from pgask import writes
from pgask.client import Client
from pgask.ingest import ingest_paths

LOG_ROW = ("INSERT INTO rag.answer_log (asked_by, web_user, pipeline, question, answer, mode,"
           " grounded) VALUES (%s, %s, 'documents', 'q', 'a', 'no_answer', true) RETURNING id")


def _claims(conn, claims) -> None:
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)",
                 (claims if isinstance(claims, str) else json.dumps(claims),))


# -- 1. the web user only narrows ------------------------------------------------------------

@pytest.fixture
def log(db, roles):
    """Role alice with answers of web users u1 and u2 and one over plain SQL; role mallory
    with one of web user u1."""
    alice, mallory = roles.make("alice"), roles.make("mallory")
    ids = {}
    for asker, web_user in ((alice, "u1"), (alice, "u2"), (alice, None), (mallory, "u1")):
        (ids[asker, web_user],) = db.execute(LOG_ROW, (asker, web_user)).fetchone()
    return alice, mallory, ids


@pytest.mark.parametrize("claims", [
    {"sub": "u1"}, {"sub": "u1' OR true --"}, {"sub": ""}, {"email": "u1"},
    {"sub": "u1", "role": "pgask_auditor"}, {"sub": "x" * 5000}, {"sub": None, "role": "u1"},
], ids=["other-roles-user", "sql-in-sub", "empty-sub", "email", "auditor-role-claim", "huge",
        "null-sub"])
def test_claims_never_show_another_roles_answers(db, roles, log, claims):
    alice, mallory, ids = log
    with roles.as_role(mallory):
        _claims(db, claims)
        seen = db.execute("SELECT asked_by::text FROM rag.answer_log").fetchall()
        db.execute("RESET request.jwt.claims")
    assert all(asker == mallory for (asker,) in seen), seen


@pytest.mark.parametrize("claims", ['{"sub": "u1"', '"u1"', "[{\"sub\": \"u1\"}]", "null",
                                    '{"sub": "u1\\u0000"}'],
                         ids=["truncated", "string", "array", "json-null", "nul-escape"])
def test_malformed_claims_fail_rather_than_widen(db, roles, log, claims):
    alice, mallory, ids = log
    with roles.as_role(mallory):
        _claims(db, claims)
        try:
            seen = db.execute("SELECT asked_by::text FROM rag.answer_log").fetchall()
        except psycopg.Error:
            seen = []
        db.execute("RESET request.jwt.claims")
    assert all(asker == mallory for (asker,) in seen), seen


def test_a_web_user_cannot_rate_another_web_users_answer_directly(db, roles, log):
    alice, _, ids = log
    with roles.as_role(alice):
        _claims(db, {"sub": "u1"})
        for statement, args in (
                ("SELECT rag.feedback(%s, false)", (ids[alice, "u2"],)),
                ("SELECT rag_api.feedback(%s, false)", (ids[alice, "u2"],)),
                ("INSERT INTO rag.answer_feedback (answer_id, helpful, web_user)"
                 " VALUES (%s, false, 'u2')", (ids[alice, "u2"],)),
                ("INSERT INTO rag.answer_feedback (answer_id, helpful, web_user)"
                 " VALUES (%s, false, 'u1')", (ids[alice, "u2"],))):
            with pytest.raises(psycopg.Error):
                db.execute(statement, args)
        db.execute("RESET request.jwt.claims")


def test_no_role_can_rewrite_or_delete_logged_answers_or_feedback(db, roles, log):
    alice, mallory, ids = log
    with roles.as_role(alice):
        (fid,) = db.execute("SELECT rag.feedback(%s, true)", (ids[alice, None],)).fetchone()
    with roles.as_role(mallory):
        for statement in (f"UPDATE rag.answer_log SET answer = 'x' WHERE id = {ids[alice, None]}",
                          f"DELETE FROM rag.answer_log WHERE id = {ids[alice, None]}",
                          f"UPDATE rag.answer_feedback SET helpful = false WHERE id = {fid}",
                          "UPDATE rag.answer_log SET web_user = 'u9'"
                          f" WHERE id = {ids[mallory, 'u1']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(statement)


def test_rag_api_runs_with_the_callers_rights_and_takes_no_new_objects(db, roles):
    rows = db.execute(
        "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc AS p"
        " WHERE p.pronamespace = 'rag_api'::regnamespace").fetchall()
    assert {r[0] for r in rows} == {"search", "answer", "answer_text", "feedback"}
    assert not any(r[1] for r in rows), rows
    assert all(r[2] == ["search_path=pg_catalog, pg_temp"] for r in rows), rows
    mallory = roles.make("mallory")
    with roles.as_role(mallory):
        for ddl in ("CREATE FUNCTION rag_api.search(query text) RETURNS int"
                    " LANGUAGE sql AS 'SELECT 1'",
                    "CREATE TABLE rag_api.t (id int)",
                    "CREATE FUNCTION rag_api.x() RETURNS int LANGUAGE sql AS 'SELECT 1'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(ddl)


def test_shadows_in_public_and_pg_temp_do_not_reach_the_wrappers(db, roles, log):
    """A role plants rag-like functions and a temp table named like what the wrappers read;
    the wrappers call schema-qualified rag.* with a pinned search_path."""
    alice, mallory, ids = log
    db.execute("GRANT CREATE ON SCHEMA public TO public")
    with roles.as_role(mallory):
        db.execute("CREATE FUNCTION public.feedback(bigint, boolean, text) RETURNS bigint"
                   " LANGUAGE sql AS 'SELECT 424242::bigint'")
        db.execute("CREATE TEMP TABLE answer_log (id bigint)")
        db.execute("SET search_path = public, pg_temp, rag")
        with pytest.raises(psycopg.Error) as caught:
            db.execute("SELECT rag_api.feedback(%s, true)", (ids[alice, None],))
        assert "is not yours" in str(caught.value)
        db.execute("RESET search_path")


# -- 2. the dashboard grant ----------------------------------------------------------------

@pytest.mark.parametrize("usage", ["dashboard", "auditor"])
def test_a_non_admin_cannot_grant_herself_the_dashboard(db, roles, usage):
    mallory = roles.make("mallory")
    with roles.as_role(mallory):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("SELECT rag.grant_usage(%s::regrole, %s)", (mallory, usage))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(f"GRANT pgask_{usage} TO {mallory}")
    (member,) = db.execute("SELECT pg_has_role(%s, 'pgask_auditor', 'USAGE')",
                           (mallory,)).fetchone()
    assert not member


def test_a_role_name_with_quotes_is_granted_and_revoked_as_that_role(db, roles):
    admin = roles.make("admin", "GRANT pgask_admin TO {role}")
    odd = 'pgask_t_odd"; GRANT pgask_owner TO public; --'
    db.execute(f'CREATE ROLE "{odd.replace(chr(34), chr(34) * 2)}" NOLOGIN')
    try:
        with roles.as_role(admin):
            db.execute("SELECT rag.grant_usage(%s::text::regrole, 'dashboard')",
                       ('"' + odd.replace('"', '""') + '"',))
            assert db.execute("SELECT pg_has_role(%s, 'pgask_auditor', 'USAGE')",
                              (odd,)).fetchone()[0]
            db.execute("SELECT rag.revoke_usage(%s::text::regrole, 'dashboard')",
                       ('"' + odd.replace('"', '""') + '"',))
        assert not db.execute("SELECT pg_has_role(%s, 'pgask_auditor', 'USAGE')",
                              (odd,)).fetchone()[0]
        (owner_public,) = db.execute(
            "SELECT count(*) FROM pg_auth_members WHERE roleid = 'pgask_owner'::regrole"
        ).fetchone()
        assert owner_public == 0
    finally:
        db.execute(f'DROP ROLE "{odd.replace(chr(34), chr(34) * 2)}"')


def test_the_recreated_views_are_not_readable_by_public(db, roles):
    mallory = roles.make("mallory")
    with roles.as_role(mallory):
        for view in ("rag.pipeline_status", "rag.dead_letters", "rag.eval_summary"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(f"SELECT * FROM {view}")
    rows = db.execute("SELECT c.relname, c.reloptions FROM pg_class AS c WHERE c.oid IN"
                      " ('rag.answers_daily'::regclass, 'rag.document_usage'::regclass,"
                      " 'rag.top_unanswered'::regclass, 'rag.answer_feedback_totals'::regclass)"
                      ).fetchall()
    assert all("security_invoker=true" in (opts or []) for _, opts in rows), rows


# -- 3. pgask ingest touches only the documents it wrote -----------------------------------

def _app_document(db, source: str, path: str, content: str = "Written by the application.") -> None:
    db.execute("INSERT INTO rag.documents (source, title, content, metadata)"
               " VALUES (%s, 'app', %s, %s)", (source, content, json.dumps({"path": path})))


def _app_documents(db) -> dict:
    return dict(db.execute("SELECT source, content FROM rag.documents"
                           " WHERE source LIKE 'app:%'").fetchall())


def test_ingest_sync_deletes_no_document_it_did_not_write(db, tmp_path):
    """An application's document whose metadata happens to have a `path` under the synced
    folder (a key name every app uses) is not a vanished file of that folder."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background.\n")
    _app_document(db, "app:guide", str(kb.resolve() / "gone.md"))
    ingest_paths(db, [str(kb)], progress=False, sync=True)
    assert "app:guide" in _app_documents(db)


def test_ingest_does_not_take_over_an_application_document_with_the_same_path(db, tmp_path):
    """The same metadata.path is not the same file written by an older pgask: the app's row
    was re-keyed to the file's key and its text replaced."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background.\n")
    _app_document(db, "app:wiki-a", str((kb / "a.md").resolve()))
    ingest_paths(db, [str(kb)], progress=False)
    assert _app_documents(db) == {"app:wiki-a": "Written by the application."}


def test_ingest_deletes_no_application_document_as_a_duplicate(db, tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background.\n")
    ingest_paths(db, [str(kb)], progress=False)
    _app_document(db, "app:wiki-a", str((kb / "a.md").resolve()))
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background, often.\n")
    ingest_paths(db, [str(kb)], progress=False)
    assert _app_documents(db) == {"app:wiki-a": "Written by the application."}


def test_ingest_still_rekeys_its_own_older_spelling(db, tmp_path):
    """The fix must keep the feature: a row an older pgask wrote (key as typed) is re-keyed."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background.\n")
    ingest_paths(db, [str(kb)], progress=False)
    (key,) = db.execute("SELECT source FROM rag.documents WHERE source LIKE '%a.md'").fetchone()
    db.execute("UPDATE rag.documents SET source = 'kb/a.md', metadata = metadata - 'root'"
               " WHERE source = %s", (key,))
    (kb / "a.md").write_text("# A\n\nAutovacuum runs in the background, often.\n")
    ingest_paths(db, [str(kb)], progress=False)
    assert [s for (s,) in db.execute("SELECT source FROM rag.documents WHERE source LIKE"
                                     " '%a.md'")] == [key]


# -- 4. the clients' writes name the pipeline's own table ---------------------------------

@pytest.mark.parametrize("table", ['"Tickets"', '"tick.ets"', '"ti""ckets"'],
                         ids=["mixed-case", "dot", "quote"])
def test_client_writes_go_to_the_pipelines_own_table(db, db_url, table):
    """target.table is regclass text, quoted where needed; splitting it at dots named a table
    that does not exist ("Tickets" quoted twice) or another one (a schema '"tick', table
    'ets"' that a role may create)."""
    db.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, body text)")
    db.execute(f"SELECT rag.create_pipeline('tk', '{table.replace(chr(39), chr(39) * 2)}', 'body')")
    client = Client(connection=db)
    client.add(["A ticket about VACUUM."], ids=["t1"], pipeline="tk")
    assert db.execute(f"SELECT id, body FROM {table}").fetchall() == [
        ("t1", "A ticket about VACUUM.")]
    assert client.delete(["t1"], pipeline="tk") == 1
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_a_metadata_key_is_a_column_name_not_sql(db):
    db.execute("CREATE TABLE tk2 (id text PRIMARY KEY, body text, tag text)")
    db.execute("SELECT rag.create_pipeline('tk2', 'tk2', 'body')")
    client = Client(connection=db)
    with pytest.raises(psycopg.errors.UndefinedColumn):
        client.add(["x"], ids=["1"], metadatas=[{'tag") VALUES (1); DROP TABLE tk2; --': "a"}],
                   pipeline="tk2")
    assert db.execute("SELECT to_regclass('tk2') IS NOT NULL").fetchone()[0]


def test_split_of_regclass_text(db):
    assert writes._table(writes.Target('"a.b"."C""d"', "body", None, ("id",))).as_string(
        db) == '"a.b"."C""d"'


# -- 5. the shared model process's answers -------------------------------------------------

DIM = 384


def _single(values) -> bytes:
    return _frame(b'{"ok": true, "rows": 1, "span_rows": [0]}',
                  struct.pack(f"<{DIM}f", *values))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_query_vector_with_nan_or_inf_falls_back(db, db_url, bad):
    got, own = answered_by_fake(db, db_url, _single([bad] + [0.05] * (DIM - 1)),
                                "SELECT rag.embed('still answered')::real[]")
    assert got == own


def test_a_batch_with_nan_falls_back(db, db_url):
    answer = _frame(b'{"ok": true, "rows": 2, "span_rows": [0, 0]}',
                    struct.pack(f"<{2 * DIM}f", *([0.05] * DIM + [math.nan] * DIM)))
    got, own = answered_by_fake(
        db, db_url, answer,
        "SELECT array_agg(v::text) FROM unnest(rag.embed(ARRAY['a', 'b'])) AS u(v)")
    assert got == own


def test_two_long_subs_are_two_web_users(db, roles):
    """rag._web_user() cut a claim at 1000 characters: two web users whose subs share their
    first 1000 characters (an IdP's long opaque ids, or emails of a provider) were one web
    user, reading and rating each other's answers."""
    alice = roles.make("alice")
    first, second = "x" * 1000 + "-first", "x" * 1000 + "-second"
    with roles.as_role(alice):
        _claims(db, {"sub": first})
        (mine,) = db.execute("SELECT rag._web_user()").fetchone()
        _claims(db, {"sub": second})
        (theirs,) = db.execute("SELECT rag._web_user()").fetchone()
        db.execute("RESET request.jwt.claims")
    assert mine != theirs
    assert len(mine) <= 1000 and len(theirs) <= 1000


# -- install: a schema planted before pgask made it ---------------------------------------

def test_a_planted_rag_api_schema_gives_its_creator_no_owner_function(db, db_url, roles):
    """Attack: rag_api is new in this release. A role that may create schemas (a source
    owner with CREATE on the database) creates it before the upgrade, with a SECURITY
    DEFINER function she may execute and CREATE for PUBLIC. `pgask install` kept the schema
    (CREATE SCHEMA IF NOT EXISTS), made pgask_owner its owner, and rag._take_ownership gave
    pgask_owner every routine in it: hers then ran as pgask_owner (rag.secrets, every
    role's answers, pgask's own definer code)."""
    from pgask.install import InstallError, install

    mallory = roles.make("mallory")
    crew = roles.make("crew", f"GRANT {{role}} TO {mallory}")  # a group she is in
    db.execute("DROP SCHEMA rag_api CASCADE")  # as before the upgrade that brings it
    (dbname,) = db.execute("SELECT current_database()").fetchone()
    db.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO {mallory}')
    with roles.as_role(mallory):
        db.execute("CREATE SCHEMA rag_api")
        db.execute("CREATE FUNCTION rag_api.whoami() RETURNS text SECURITY DEFINER"
                   " LANGUAGE sql AS 'SELECT current_user::text'")
        db.execute(f"GRANT EXECUTE ON FUNCTION rag_api.whoami() TO {crew}")
        db.execute("GRANT CREATE ON SCHEMA rag_api TO public")
    try:
        with psycopg.connect(db_url) as conn:
            install(conn)
    except InstallError as exc:
        assert "rag_api" in str(exc)
        return  # refused: what the test wants
    with roles.as_role(mallory):
        try:
            (who,) = db.execute("SELECT rag_api.whoami()").fetchone()
        except psycopg.Error as exc:
            who = f"refused: {exc}"
        (owner,) = db.execute("SELECT proowner::regrole::text FROM pg_proc"
                              " WHERE oid = 'rag_api.whoami()'::regprocedure").fetchone()
        (can_create,) = db.execute(
            "SELECT has_schema_privilege('rag_api', 'CREATE')").fetchone()
    assert who != "pgask_owner" and owner != "pgask_owner", (who, owner)
    assert not can_create, "PUBLIC may create in rag_api"


def test_a_routine_planted_in_rag_api_is_not_handed_to_the_owner(db, db_url, roles):
    """Had a role ever been given CREATE on rag_api, the next install handed her routines to
    pgask_owner; now it takes CREATE back and refuses to hand over what it did not make."""
    from pgask.install import install

    mallory = roles.make("mallory")
    crew = roles.make("crew", f"GRANT {{role}} TO {mallory}")
    db.execute("GRANT CREATE ON SCHEMA rag_api TO public")
    with roles.as_role(mallory):
        db.execute("CREATE FUNCTION rag_api.whoami() RETURNS text SECURITY DEFINER"
                   " LANGUAGE sql AS 'SELECT current_user::text'")
        db.execute(f"GRANT EXECUTE ON FUNCTION rag_api.whoami() TO {crew}")
    with pytest.raises(psycopg.Error, match="pgask did not create it"):
        with psycopg.connect(db_url) as conn:
            install(conn)
    db.execute("DROP FUNCTION rag_api.whoami()")
    with psycopg.connect(db_url) as conn:
        install(conn)
    (can_create,) = db.execute(
        "SELECT has_schema_privilege(%s, 'rag_api', 'CREATE')", (mallory,)).fetchone()
    assert not can_create


def test_a_web_user_cannot_pile_up_verdicts_on_one_answer(db, roles, log):
    """rag_api.feedback is open to every web user (anonymous ones included) and the answer
    log's rate limit does not cover it: each call stored another verdict (and a comment of
    up to 10,000 characters) on the same answer, without bound."""
    alice, _, ids = log
    with roles.as_role(alice):
        _claims(db, {"sub": "u1"})
        stored = 0
        try:
            for _ in range(50):
                db.execute("SELECT rag_api.feedback(%s, true, %s)",
                           (ids[alice, "u1"], "spam " * 2000))
                stored += 1
        except psycopg.Error as exc:
            assert exc.sqlstate == "22023", exc
        db.execute("RESET request.jwt.claims")
    assert 1 <= stored <= 10, stored


def test_uninstall_leaves_a_users_own_rag_api_schema(db, roles):
    """`pgask uninstall` removes what pgask created and nothing else, but dropped any schema
    named rag_api (a user's own, on a database whose pgask predates it) with CASCADE."""
    from pgask.uninstall import uninstall

    mallory = roles.make("mallory")
    db.execute("DROP SCHEMA rag_api CASCADE")  # a pgask from before rag_api
    (dbname,) = db.execute("SELECT current_database()").fetchone()
    db.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO {mallory}')
    with roles.as_role(mallory):
        db.execute("CREATE SCHEMA rag_api")
        db.execute("CREATE TABLE rag_api.orders (id int PRIMARY KEY)")
        db.execute("INSERT INTO rag_api.orders VALUES (1), (2)")
    try:
        uninstall(db)
    except Exception:  # refusing is as good as keeping it
        pass
    assert db.execute("SELECT to_regclass('rag_api.orders') IS NOT NULL").fetchone()[0]
    db.execute("DROP SCHEMA rag_api CASCADE")
