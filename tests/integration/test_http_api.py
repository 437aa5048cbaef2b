"""pgask over HTTP as PostgREST (and Supabase) serve it: schema rag_api through real HTTP
requests to a stand-in for PostgREST's RPC endpoint (tests/postgrest_server.py: the real
server is not installable here; it sends what PostgREST sends), logged in as an
authenticator role that switches to the JWT's role. The answer log and a source's row-level
security follow the web user of the request's JWT."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import psycopg
import pytest
from postgrest_server import PostgrestStandIn, make_jwt

from fix_db import add_document

SECRET = "a-test-secret-of-at-least-thirty-two-characters"
VACUUM = ("VACUUM reclaims storage occupied by dead tuples. Tuples that are deleted or "
          "obsoleted by an update are not physically removed from their table.")


@pytest.fixture
def web(db, roles):
    """PostgREST's roles (an anonymous and an authenticated one, and the authenticator that
    logs in), pgask's documents readable by both web roles, and the stand-in serving
    rag_api."""
    anon = roles.make("web_anon", "GRANT SELECT ON rag.documents TO {role}")
    user = roles.make("authenticated", "GRANT SELECT ON rag.documents TO {role}")
    authenticator = roles.make("authenticator", "ALTER ROLE {role} LOGIN NOINHERIT",
                               f"GRANT {anon}, {user} TO {{role}}")
    info = db.info
    api = PostgrestStandIn(f"host={info.host} port={info.port} dbname={info.dbname}"
                           f" user={authenticator}", "rag_api", anon, SECRET)
    api.roles = {"anon": anon, "user": user}
    yield api
    api.close()


def rpc(api, name, body, sub=None, method="POST"):
    """POST /rpc/<name> with a JSON body (and a JWT for `sub`, as its sign-in would give it):
    the HTTP status and the decoded JSON body."""
    headers = {"Content-Type": "application/json"}
    if sub is not None:
        token = make_jwt({"sub": sub, "role": api.roles["user"]}, SECRET)
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if method == "POST" else None
    url = f"{api.url}/rpc/{name}"
    if method == "GET":
        url += "?" + urllib.parse.urlencode(body)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_search_answer_and_feedback_over_http(db, web):
    add_document(db, "sql-vacuum.html", VACUUM, "VACUUM")
    status, rows = rpc(web, "search", {"query": "dead tuples", "k": 2})
    assert status == 200 and rows[0]["source"] == "sql-vacuum.html", rows
    assert rpc(web, "search", {"query": "dead tuples", "k": 1}, method="GET")[1] == rows[:1]

    status, answer = rpc(web, "answer", {"question": "What does VACUUM reclaim?"}, sub="alice")
    assert status == 200 and "dead tuples" in answer["answer"], answer
    status, text = rpc(web, "answer_text", {"question": "What does VACUUM reclaim?"}, sub="bob")
    assert status == 200 and "Sources:\n[1] VACUUM (sql-vacuum.html)" in text

    # One database role, two web users: each answer is logged with its asker.
    assert db.execute("SELECT asked_by::text, web_user FROM rag.answer_log ORDER BY id"
                      ).fetchall() == [(web.roles["user"], "alice"), (web.roles["user"], "bob")]
    # A web user rates its own answers only: another's is "not yours", as any other role's.
    status, error = rpc(web, "feedback", {"answer_id": answer["answer_id"], "helpful": False},
                        sub="bob")
    assert status == 400 and error["code"] == "22023", error
    assert "is not yours" in error["message"]
    status, feedback_id = rpc(web, "feedback", {"answer_id": answer["answer_id"],
                                                "helpful": True}, sub="alice")
    assert status == 200 and isinstance(feedback_id, int)
    assert db.execute("SELECT web_user, helpful FROM rag.answer_feedback").fetchall() == [
        ("alice", True)]

    # Only the entry points: rag's helpers are not in the exposed schema.
    assert rpc(web, "_log_answer", {"entry": {}})[0] == 404
    # A bad argument is the function's own error, with PostgREST's status for it.
    status, error = rpc(web, "search", {"query": "dead tuples", "k": 0})
    assert status == 400 and error["code"] == "22023" and "k" in error["message"], error


def test_a_source_policy_on_the_web_user_filters_search_and_answers(db, web):
    """A source whose row-level security reads the JWT's sub, as Supabase's auth.uid() does:
    through rag_api, each web user finds only its own rows."""
    user = web.roles["user"]
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, body text)")
    db.execute("INSERT INTO notes VALUES (1, 'alice', 'The bicycle is parked in the garage,"
               " next to the blue car.'), (2, 'bob', 'The bicycle is parked in the garden,"
               " next to the red shed.')")
    db.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
    db.execute(f"CREATE POLICY own_notes ON notes TO {user} USING (owner ="
               " current_setting('request.jwt.claims', true)::json ->> 'sub')")
    db.execute(f"GRANT SELECT ON notes TO {user}")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    db.execute("CALL rag.process_queue('notes')")

    for sub, mine in (("alice", "garage"), ("bob", "garden")):
        status, rows = rpc(web, "search", {"query": "bicycle", "pipeline": "notes"}, sub=sub)
        assert status == 200 and len(rows) == 1 and mine in rows[0]["content"], rows
        status, answer = rpc(web, "answer", {"question": "Where is the bicycle parked?",
                                             "pipeline": "notes"}, sub=sub)
        assert status == 200 and mine in answer["answer"], answer
        assert all(c["document_id"] == str(1 if sub == "alice" else 2)
                   for c in answer["citations"])
    # The anonymous role has no grant on the source: 401, as PostgREST says for 42501.
    status, error = rpc(web, "search", {"query": "bicycle", "pipeline": "notes"})
    assert status == 401 and error["code"] == "42501", error


def test_the_web_user_only_narrows_a_roles_rows(db, roles):
    """request.jwt.claims is a label any SQL caller can set: with it a role sees only that
    web user's rows of the log, never another role's; claims that are not a JSON object
    fail instead of reading as no web user."""
    alice, mallory = roles.make("alice"), roles.make("mallory")
    for asker, web_user in ((alice, "u1"), (alice, None), (mallory, "u1")):
        db.execute("INSERT INTO rag.answer_log (asked_by, web_user, pipeline, question, answer,"
                   " mode, grounded) VALUES (%s, %s, 'documents', 'q', 'a', 'no_answer', true)",
                   (asker, web_user))
    with roles.as_role(alice):
        assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone()[0] == 2
        db.execute("SELECT set_config('request.jwt.claims', '{\"sub\": \"u1\"}', false)")
        assert db.execute("SELECT asked_by::text, web_user FROM rag.answer_log").fetchall() == [
            (alice, "u1")]
        db.execute("SELECT set_config('request.jwt.claims', '[\"u1\"]', false)")
        with pytest.raises(psycopg.Error) as caught:
            db.execute("SELECT count(*) FROM rag.answer_log")
        assert caught.value.sqlstate == "22023"
        assert "request.jwt.claims must be a JSON object" in str(caught.value)
        db.execute("RESET request.jwt.claims")
