"""One error shape: every public entry point answers bad input with a PostgreSQL error that
has a proper SQLSTATE and a message naming the problem, never a Python traceback."""

import json

import psycopg
import pytest
from fix_openai import free_port
from psycopg import sql

# SQLSTATE classes a public entry point may raise: 22 data (bad argument), 42 privilege or
# undefined object, 38/58 provider, 25 transaction state, 53 limit, 55 object in use, 23
# constraint (a duplicate name), 57 cancel.
ALLOWED_CLASSES = {"22", "42", "38", "58", "25", "53", "55", "23", "57"}


def assert_clean(exc: psycopg.Error, sqlstate: str | None = None, match: str | None = None):
    diag = exc.diag
    text = " ".join(filter(None, [diag.message_primary, diag.message_detail,
                                  diag.message_hint, diag.context]))
    assert "Traceback" not in text, text
    assert "spiexceptions" not in text and "Error: " not in (diag.message_primary or ""), text
    if sqlstate is not None:
        assert exc.sqlstate == sqlstate, (exc.sqlstate, text)
    else:
        assert exc.sqlstate[:2] in ALLOWED_CLASSES, (exc.sqlstate, text)
    if match is not None:
        assert match in diag.message_primary, diag.message_primary


def raises(db, statement, params=None, sqlstate=None, match=None):
    with pytest.raises(psycopg.Error) as info:
        db.execute(statement, params)
    assert_clean(info.value, sqlstate, match)
    return info.value


@pytest.fixture
def tickets(db):
    db.execute("CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)")
    db.execute("INSERT INTO tickets VALUES (1, 'The disk on db1 is full.')")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body')")
    db.execute("CALL rag.process_queue()")
    return db


def test_process_queue_inside_a_transaction_block(tickets, db_url):
    db = tickets
    with psycopg.connect(db_url) as conn:  # not autocommit: BEGIN is implicit
        conn.execute("UPDATE tickets SET body = 'changed' WHERE id = 1")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CALL rag.process_queue()")
        assert_clean(info.value, "25001", "cannot run inside a transaction block")
    # Several statements in one query string are one implicit transaction block too.
    raises(db, "UPDATE tickets SET body = 'again' WHERE id = 1; CALL rag.process_queue()",
           sqlstate="25001", match="run CALL rag.process_queue() on its own")


def test_search_options_and_filters_out_of_range(tickets):
    db = tickets
    raises(db, "SELECT * FROM rag.search('disk', 1, options => '{\"ef_search\": 1e400}')",
           sqlstate="22023", match="ef_search must be between 1 and 1000")
    deep = '{"$and": [' * 1000 + '{"a": 1}' + "]}" * 1000  # (too deep for json.dumps)
    raises(db, "SELECT * FROM rag.search('disk', 1, %s::jsonb)", (deep,),
           sqlstate="22023", match="nested at most 32 deep")
    # jsonb writes 1e5000 with all its digits, more than Python reads into an int (4300):
    # that ValueError escaped rag._search_error as a Python traceback.
    raises(db, "SELECT * FROM rag.search('disk', 1, '{\"a\": {\"$gt\": 1e5000}}')",
           sqlstate="22023", match="a number may have at most 4300 digits")
    raises(db, "SELECT * FROM rag.search('disk', 1, options => '{\"ef_search\": 1e5000}')",
           sqlstate="22023", match="a number may have at most 4300 digits")
    wide = {"$and": [{}] * 200_000}
    raises(db, "SELECT * FROM rag.search('disk', 1, %s::jsonb)", (json.dumps(wide),),
           sqlstate="22023", match="at most 1000 nodes")
    # The bound is a setting.
    db.execute("UPDATE rag.settings SET value = '300000' WHERE key = 'max_filter_nodes'")
    assert db.execute("SELECT count(*) FROM rag.search('disk', 1, %s::jsonb,"
                      " pipeline => 'tickets')",
                      (json.dumps(wide),)).fetchone() == (1,)


def test_whitespace_questions_are_refused(tickets):
    db = tickets
    for function in ("rag.search", "rag.answer", "rag_answer"):
        raises(db, f"SELECT {function}(%s)", (" \t\n\r ",), sqlstate="22023",
               match="must be a non-empty text")


def test_roles_without_select_get_a_privilege_error(tickets):
    db = tickets
    db.execute("CREATE ROLE outsider")
    db.execute("GRANT USAGE ON SCHEMA rag TO outsider")
    db.execute("SET ROLE outsider")
    try:
        raises(db, "SELECT * FROM rag.search('disk', 1, pipeline => 'tickets')",
               sqlstate="42501", match="may not read pipeline tickets")
        raises(db, "SELECT rag.answer('disk', pipeline => 'tickets')", sqlstate="42501",
               match="may not read pipeline tickets")
        raises(db, "SELECT rag_answer('disk')", sqlstate="42501",  # the default pipeline
               match="may not read pipeline documents")
        raises(db, "CALL rag.process_queue()", sqlstate="42501",
               match="rag.process_queue")
    finally:
        db.execute("RESET ROLE")


def test_embedder_failure_inside_answer_is_a_provider_error(tickets):
    db = tickets
    db.execute("SELECT rag.create_embedder('down', 'openai', 'm', 384, %s)",
               (f"http://127.0.0.1:{free_port()}/v1",))
    db.execute("SELECT rag.drop_pipeline('tickets')")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', embedder => 'down')")
    # Where it is not degraded to keyword search (test_degraded_search.py): vector search,
    # and answers whose search options say on_embedder_error 'error'.
    search = raises(db, "SELECT * FROM rag.search('disk', 1, mode => 'vector',"
                    " pipeline => 'tickets')", sqlstate="38000", match="cannot connect")
    answer = raises(db, "SELECT rag.answer('disk', pipeline => 'tickets', options =>"
                    " '{\"search\": {\"on_embedder_error\": \"error\"}}')", sqlstate="38000",
                    match="cannot connect")
    assert search.diag.message_primary.split(": ", 1)[1] in answer.diag.message_primary


@pytest.mark.parametrize("options, match", [
    ({"timeout_seconds": 0}, "timeout_seconds must be a number between"),
    ({"timeout_seconds": "fast"}, "timeout_seconds must be a number between"),
    ({"max_batch_inputs": 0}, "max_batch_inputs must be an integer between"),
    ({"max_batch_tokens": 1.5}, "max_batch_tokens must be an integer between"),
    ({"send_dimensions": "yes"}, "send_dimensions must be true or false"),
    ({"batch": 10}, "unknown option \"batch\""),
])
def test_embedder_options_are_validated_at_create(db, options, match):
    raises(db, "SELECT rag.create_embedder('e', 'openai', 'm', 8, 'http://127.0.0.1:1/v1',"
           " options => %s)", (json.dumps(options),), sqlstate="22023", match=match)


# --- the sweep -------------------------------------------------------------------------

HUGE_TEXT = "word " * 240_000  # 1.2 MB: over max_document_chars (rag.chunk: 53400)
# Functions that change things: swept with a first argument naming nothing.
DESTRUCTIVE = {"drop_pipeline", "drop_llm", "reembed", "alter_pipeline", "retry_failed"}


def entry_points(db):
    """(schema, name, kind, argument types) of every public function and procedure."""
    return db.execute("""
        SELECT n.nspname, p.proname, p.prokind,
               array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t)
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE (n.nspname = 'rag' AND p.proname NOT LIKE '\\_%')
           OR (n.nspname = 'public' AND p.proname = 'rag_answer')
        ORDER BY 1, 2, 4""").fetchall()


def bad_values(type_name: str) -> list:
    """Values of one argument type that a function must refuse or handle."""
    return {
        "text": [None, "", " \t\n", HUGE_TEXT, "no_such_thing"],
        "integer": [None, -1, 0, 2**31 - 1],
        "bigint": [None, -1, 0],
        "double precision": [None, -1.0, float("inf"), float("nan")],
        "jsonb": [None, "[]", '"x"', '{"no_such_option": 1}'],
        "text[]": [None, [], [None], ["no_such_column"]],
        "regclass": [None, "pg_class"],
        "regconfig": [None],
        "boolean": [None],
        "bytea": [None, b""],
    }.get(type_name, [None])


def call(db, schema, name, kind, types, args):
    placeholders = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(t)) for t in types)
    verb = "CALL" if kind == "p" else "SELECT * FROM"
    statement = sql.SQL(verb + " {}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(name), placeholders)
    return db.execute(statement, args)


def sweep_cases(types):
    """For each argument in turn, each of its bad values, the others NULL-free defaults."""
    base = [bad_values(t)[-1] for t in types]
    yield [None] * len(types)
    for i, t in enumerate(types):
        for value in bad_values(t):
            args = list(base)
            args[i] = value
            yield args


def test_sweep_every_public_entry_point_with_bad_inputs(tickets):
    db = tickets
    points = entry_points(db)
    assert len(points) >= 20, points
    checked = 0
    for schema, name, kind, types in points:
        for args in sweep_cases(types):
            if name in DESTRUCTIVE and types[:1] == ["text"] and args[0] is not None:
                args = ["no_such_thing", *args[1:]]  # never the fixture's pipeline
            try:
                call(db, schema, name, kind, types, args)
            except psycopg.Error as exc:
                assert_clean(exc)
                if exc.sqlstate[:2] == "57":
                    raise
            checked += 1
    assert checked > 200


def test_sweep_as_a_role_without_privileges(tickets):
    db = tickets
    db.execute("CREATE ROLE nobody")
    db.execute("GRANT USAGE ON SCHEMA rag TO nobody")
    points = entry_points(db)
    db.execute("SET ROLE nobody")
    try:
        for schema, name, kind, types in points:
            args = ["tickets" if t == "text" else None for t in types]
            try:
                call(db, schema, name, kind, types, args)
            except psycopg.Error as exc:
                assert_clean(exc)
    finally:
        db.execute("RESET ROLE")


def test_procedures_inside_a_transaction_block(tickets, db_url):
    with psycopg.connect(db_url) as conn:
        for schema, name, kind, types in entry_points(conn):
            if kind != "p":
                continue
            with pytest.raises(psycopg.Error) as info:
                call(conn, schema, name, kind, types, [None] * len(types))
            assert_clean(info.value)
            conn.rollback()
