"""Catalog-driven checks of every pgask function (docs/security.md, "search_path" and
"EXECUTE"): they read pg_proc after pipelines exist, so a function added later, or generated
for a pipeline, that breaks a rule fails here. And a real search_path hijack: shadow functions
in public with closer type matches than the built-ins pgask calls, while pgask is used by a
superuser and by ordinary roles in every way it can be."""

from __future__ import annotations

import re

import psycopg
import pytest

PINNED = "search_path=pg_catalog, pg_temp"

# Routines that cannot carry a SET clause: a procedure with one cannot COMMIT. They pin the
# search_path with set_config as their first statement and again after every commit.
UNPINNABLE = {
    "rag.process_queue(text,integer,double precision,double precision,bigint)":
        "commits: pins search_path with set_config first and after each commit",
    "rag._process_queue(text,integer,double precision,double precision,bigint,text,text)":
        "commits: pins search_path with set_config after each commit (pgask.queue)",
    "rag._run_schedule(text,integer)":
        "commits: pins search_path with set_config first (pg_cron's sub-minute loop)",
}

# Routines every role may execute, and why that gives no role more than it had. Everything
# else in schema rag (every rag._* helper, every SECURITY DEFINER function, the generated
# capture functions) is revoked from PUBLIC.
PUBLIC_EXECUTE = {
    # Entry points for readers: invoker rights, so the caller's own privileges and row-level
    # security apply to every chunk they touch.
    "rag.search(text,integer,jsonb,text,text,jsonb)": "invoker; reads chunks as the caller",
    "rag.answer(text,integer,jsonb,text,text,jsonb)": "invoker; searches as the caller",
    "rag.answer_sources(text,integer,jsonb,text,text)": "invoker; rag.answer as rows",
    "public.rag_answer(text)": "invoker; rag.answer as text",
    "rag.format_answer(jsonb)": "pure function of its argument",
    "rag.feedback(bigint,boolean,text)":
        "invoker; row-level security lets a role rate only answers it can see",
    "rag.embed(text)": "local model; no data, no key",
    "rag.embed(text[])": "local model; no data, no key",
    "rag.embed(text,text)": "invoker; a secret: key is usable only by pgask_reader members",
    "rag.chunk(text,integer,integer)": "pure function of its arguments",
    "rag.chunk(text,text,integer,integer,text)": "pure function of its arguments",
    "rag.markdown_from_html(text)": "pure function of its argument",
    "rag.text_from_pdf(bytea)": "pure function of its argument",
    # Administration: invoker rights, and rag._require_admin refuses non-admins with 42501
    # before anything happens; a non-admin also lacks the table privileges they need.
    "rag.create_pipeline(text,regclass,text,text,text[],jsonb,text,text,regconfig)": "admin",
    "rag.create_pipeline(text,regclass,text[],text,text[],jsonb,text,text,regconfig)": "admin",
    "rag.alter_pipeline(text,jsonb,text[],text,integer,double precision,double precision,"
    "regconfig,jsonb,jsonb)": "admin",
    "rag.drop_pipeline(text)": "admin",
    "rag.reembed(text,text)": "admin",
    "rag.create_embedder(text,text,text,integer,text,text,jsonb)": "admin",
    "rag.create_reranker(text,text,text,text,text,jsonb)": "admin",
    "rag.create_llm(text,text,text,text,text,jsonb,boolean)": "admin",
    "rag.drop_llm(text)": "admin",
    "rag.set_secret(text,text,text[])": "admin",
    "rag.grant_usage(regrole,text)": "admin; GRANT of a role needs its ADMIN option anyway",
    "rag.revoke_usage(regrole,text)": "admin; REVOKE of a role needs its ADMIN option anyway",
    "rag.retry_failed(text)": "invoker; needs UPDATE on rag.queue (owner only)",
    "rag.process_queue(text,integer,double precision,double precision,bigint)":
        "invoker; needs the owner's privileges on rag.queue and the chunk tables",
    # Invoker helpers that the reader entry points above call as the caller; each reads only
    # what PUBLIC may read (rag.pipelines, rag.settings, registries) or the caller's chunks.
    "rag._python_init()": "makes the package importable; reads rag.settings (PUBLIC)",
    "rag._pipeline(text,text)": "reads rag.pipelines (PUBLIC)",
    "rag._default_pipeline()": "reads rag.pipelines (PUBLIC)",
    "rag._search_error(jsonb,jsonb,text)": "validates options; reads registries (PUBLIC)",
    "rag._search_rows(text,text,integer,jsonb,text,text,jsonb)": "rag.search's body, invoker",
    "rag._bm25_idf(text,text[])":
        "invoker; statistics of chunk tables the caller may SELECT (rag.bm25_term_stats)",
    "rag._embed_with(text,text)": "rag.embed's body, invoker",
    "rag._as_timestamptz(text)": "pure; used in search filters",
    "rag._answer(text,integer,jsonb,text,text,jsonb)": "rag.answer's body, invoker",
    "rag._answer_options_error(jsonb)": "pure validation",
    "rag._llm_options_error(jsonb)": "pure validation",
    "rag._log_answer(jsonb)":
        "invoker; row-level security on rag.answer_log admits only the caller's own rows, "
        "citing chunks the caller can read",
    "rag._chunks_readable(text,bigint[])": "invoker; in answer_log's policy, as the caller",
    "rag._answer_token_ok(text)":
        "uses up a one-time token that only rag.answer's Python code issues; no data",
    "rag._prune_answer_log()":
        "SECURITY DEFINER; deletes only rows past the owner's retention, as any answer does",
    "rag._chunk(text,integer,integer)": "pure; rag.chunk's body",
    "rag._chunk_by(text,text,integer,integer,text)": "pure; rag.chunk's body",
    "rag._check_chunk_size(integer,integer)": "pure validation",
    "rag._text_from_pdf(bytea)": "pure; rag.text_from_pdf's body",
    "rag._require_admin(text)": "raises unless the caller is an admin",
    "rag._caller()": "the role the session acts as (SET ROLE or the login role): no data",
    "rag._check_registration(text,text,text,text,jsonb)": "pure validation",
    "rag._chunker_error(jsonb)": "pure validation",
    "rag.distribute_pipeline(text,integer)": "admin",
    "rag._distributed(text)": "whether a chunk table is distributed (Citus): no secret; search",
    "rag._raise_clean(text,text,text,text)": "pure: raises the error it is given, cleaned",
    "rag._check_document(text,text)": "pure validation of a document's size (rag.settings)",
    "rag._check_reader(text,text)": "invoker; raises 42501 unless the caller may read",
    "rag._store(text,integer)": "pure: a chunk table's name (rag.search opens it first)",
    # Capture triggers on partitions are created by whoever creates or attaches them: these
    # run as that role, and only create triggers on tables it owns.
    "rag._attach_capture(text,boolean)":
        "invoker; creates capture triggers on tables the caller owns",
    "rag._lock_nowait(regclass[],text,text)": "invoker; locks only what the caller may lock",
    "rag._partition_tree(oid)": "a table's partitions, from the catalog (readable by all)",
    "rag._capture_targets(text)": "reads rag.pipelines and the partition tree (PUBLIC)",
    "rag._on_ddl_as_runner()": "event trigger function (cannot be called); invoker on purpose",
    "rag._web_user()": "reads the caller's own request.jwt.claims setting: no data",
    # The HTTP entry points (schema rag_api, RAG_API below): invoker wrappers of the above.
    "rag_api.search(text,integer,jsonb,text,text,jsonb)": "invoker; rag.search",
    "rag_api.answer(text,integer,jsonb,text,text,jsonb)": "invoker; rag.answer",
    "rag_api.answer_text(text)": "invoker; rag.answer as text",
    "rag_api.feedback(bigint,boolean,text)": "invoker; rag.feedback",
}

# Schema rag_api is what PostgREST exposes over HTTP: exactly these routines, and nothing
# that is not an entry point (a helper put there would be callable as POST /rpc/<name>).
RAG_API = {
    "rag_api.search(text,integer,jsonb,text,text,jsonb)",
    "rag_api.answer(text,integer,jsonb,text,text,jsonb)",
    "rag_api.answer_text(text)",
    "rag_api.feedback(bigint,boolean,text)",
}

# Functions generated for each pipeline, by the pattern of their names.
GENERATED_PUBLIC = {
    "_capture()": "trigger function (cannot be called); EXECUTE is for whoever creates its "
                  "triggers: the source's owner, or whoever adds a partition",
    "_visible(text)": "invoker; whether the caller may see a source row (rag.search, the "
                      "chunk tables' policy)",
}
# The generated visibility functions pin search_path and also name everything they use with
# its schema (rag._install_visibility; checked below). (Not inlined: a worker's queries of
# the chunk tables never parse them, so workers need no USAGE on the source's schema.)
INLINED = "_visible(text)"


def public_reason(signature: str) -> str | None:
    if signature in PUBLIC_EXECUTE:
        return PUBLIC_EXECUTE[signature]
    if signature.startswith("rag.pgask_"):
        return next((why for end, why in GENERATED_PUBLIC.items() if signature.endswith(end)),
                    None)
    return None


def _routines(db):
    """Every routine of schemas rag and rag_api, and public.rag_answer, with its signature as
    regprocedure prints it when no schema but pg_catalog is on the path."""
    db.execute("SET search_path = pg_catalog")
    try:
        return db.execute(
            "SELECT p.oid, p.oid::regprocedure::text, p.prosecdef,"
            " coalesce(p.proconfig, '{}'), p.prokind,"
            " EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))"
            "   AS a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),"
            " obj_description(p.oid, 'pg_proc')"
            " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('rag', 'rag_api')"
            "  OR (n.nspname = 'public' AND p.proname = 'rag_answer')"
            " ORDER BY 2").fetchall()
    finally:
        db.execute("RESET search_path")


@pytest.fixture
def with_pipelines(db):
    """An async and a sync pipeline, so that their generated functions are checked too."""
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, title text, body text, tags jsonb)")
    db.execute("INSERT INTO notes VALUES (1, 'Vacuum', 'VACUUM reclaims dead tuples.', '{}')")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body', title => 'title',"
               " metadata => ARRAY['tags'])")
    db.execute("CREATE TABLE memos (id int PRIMARY KEY, body text)")
    db.execute("SELECT rag.create_pipeline('memos', 'memos', 'body', mode => 'sync')")
    return db


def test_every_function_pins_a_safe_search_path(with_pipelines):
    db = with_pipelines
    routines = _routines(db)
    generated = [r for r in routines if r[1].startswith("rag.pgask_")]
    assert len(generated) == 6, generated  # capture and visibility: documents, notes, memos
    bad = []
    for oid, signature, definer, config, kind, _, _ in routines:
        paths = [c for c in config if c.startswith("search_path=")]
        if signature in UNPINNABLE:
            assert kind == "p" and not paths, signature
            continue
        if signature.startswith("rag.pgask_") and signature.endswith(INLINED):
            (body,) = db.execute("SELECT prosrc FROM pg_proc WHERE oid = %s", (oid,)).fetchone()
            # Every relation, operator and type named with its schema (and the path pinned).
            assert not definer and config == [PINNED], signature
            assert re.fullmatch(r" BEGIN RETURN EXISTS \(SELECT FROM \S+\.\S+ AS s WHERE"
                                r"( s\.\S+ OPERATOR\(\S+\.=\) \S+::\S+\.\S+( AND)?)+\);"
                                r" EXCEPTION WHEN data_exception THEN RETURN false; END ",
                                body), body
            continue
        if paths != [PINNED]:
            bad.append((signature, "definer" if definer else "invoker", config))
    assert not bad, f"functions without SET search_path = pg_catalog, pg_temp: {bad!r}"
    print(f"checked {len(routines)} routines")


def test_no_search_path_names_a_schema_others_can_create_in(with_pipelines):
    db = with_pipelines
    unsafe = []
    for _, signature, _, config, _, _, _ in _routines(db):
        for setting in config:
            if not setting.startswith("search_path="):
                continue
            for schema in setting.split("=", 1)[1].split(","):
                schema = schema.strip().strip('"')
                if schema == "pg_temp":
                    continue  # the caller's own temporary schema comes last: tables only
                creators = db.execute(
                    "SELECT coalesce(string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
                    "  ELSE a.grantee::regrole::text END, ', '), '')"
                    " FROM pg_namespace AS n"
                    " CROSS JOIN aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a"
                    " LEFT JOIN pg_roles AS r ON r.oid = a.grantee"
                    " WHERE n.nspname = %s AND a.privilege_type = 'CREATE'"
                    "  AND (a.grantee = 0 OR NOT r.rolsuper)", (schema,)).fetchone()[0]
                if creators:
                    unsafe.append((signature, schema, creators))
    assert not unsafe


def test_public_may_execute_only_the_allowlist(with_pipelines):
    db = with_pipelines
    routines = _routines(db)
    public = {r[1] for r in routines if r[5]}
    assert {p for p in public if public_reason(p) is None} == set(), \
        "executable by PUBLIC without a reason"
    # Every definer function is revoked from PUBLIC unless the allowlist says why not, and
    # carries a comment saying why it needs definer rights.
    for _, signature, definer, _, _, public_execute, comment in routines:
        if definer:
            assert not public_execute or "DEFINER" in (public_reason(signature) or "") \
                or signature.endswith("_capture()"), signature
            assert comment and "definer" in comment.lower(), signature
    # The internal functions that read sources, change pipelines or queue work, by name.
    names = {r[1].split("(")[0] for r in routines if not r[5]}
    assert {"rag._reconcile", "rag._request_check", "rag._drain_inbox", "rag._process_now",
            "rag._sync_security", "rag._use_secret", "rag._bind_source", "rag._source_rows",
            "rag._open_source_schema", "rag._mark_broken", "rag._install_capture"} <= names


def test_rag_api_holds_exactly_the_http_entry_points(db):
    """PostgREST exposes every routine and relation of the schemas it serves: rag_api has
    the listed invoker routines and nothing else (no table, view or sequence either)."""
    routines = {r[1]: r for r in _routines(db) if r[1].startswith("rag_api.")}
    assert set(routines) == RAG_API
    assert not any(r[2] for r in routines.values()), "rag_api routines run as the caller"
    assert db.execute("SELECT count(*) FROM pg_class"
                      " WHERE relnamespace = 'rag_api'::regnamespace").fetchone()[0] == 0
    assert db.execute("SELECT nspowner::regrole::text, has_schema_privilege('public',"
                      " 'rag_api', 'USAGE'), has_schema_privilege('public', 'rag_api', 'CREATE')"
                      " FROM pg_namespace WHERE nspname = 'rag_api'").fetchone() == (
        "pgask_owner", True, False)


# SECURITY DEFINER routines that pipeline admins and workers may execute although they check
# no caller, and why that gives them nothing: each does only what the pipeline's own state
# dictates, or what the worker's job is anyway. Every other definer routine they may execute
# checks its caller (rag._require_admin, rag._require_member, rag._require_lender,
# rag._caller()); the internal ones that change pipelines are pgask_owner's alone.
UNCHECKED_FOR_STAFF = {
    "rag._sync_keyword_index(text,integer)": "rebuilds the keyword index the pipeline defines",
    "rag._point_view(text)": "points the pipeline's view at its active chunk table",
    "rag._sync_security(text)": "brings chunk grants and policies in step with the source",
    "rag._refresh_pipeline(text)": "re-derives capture and access from the source as it is",
    "rag._reconcile(text,text,integer)": "queues rows to be checked: the worker's job",
    "rag._source_rows(text,text,text[])": "reads rows as their owner through a checked "
                                          "reader: the worker's job",
    "rag._switch_set(text)": "switches only a re-embed whose rows are all done",
    "rag._lock_key(text)": "the keys of the locks workers take, and of no other lock",
    "rag._use_secret(text)": "loads a key into pgask's code, never returns it",
    "rag._prune_answer_log()": "deletes only log rows past the retention setting",
    "rag._mark_unreadable(text)": "marks a pipeline broken only if its reader fails now",
}


def test_admins_and_workers_execute_no_unchecked_definer_routine(with_pipelines):
    """A worker dropped another owner's pipeline and marked it broken through definer
    routines meant for pgask's own code (third attack round): every definer routine that a
    member of pgask_admin or pgask_worker may execute checks its caller, or is listed above
    with the reason it cannot hurt."""
    unchecked = {sig for (sig,) in with_pipelines.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
        " WHERE p.pronamespace = 'rag'::regnamespace AND p.prosecdef"
        " AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)"
        " AND (has_function_privilege('pgask_worker', p.oid, 'EXECUTE')"
        "   OR has_function_privilege('pgask_admin', p.oid, 'EXECUTE'))"
        " AND p.prosrc !~ 'rag\\._require_|rag\\._caller\\(\\)'").fetchall()}
    assert unchecked - set(UNCHECKED_FOR_STAFF) == set()


def test_an_ordinary_role_cannot_call_internal_functions(db, with_pipelines, roles):
    role = roles.make("nobody")
    calls = ["SELECT rag._reconcile('notes', 'all')", "SELECT rag._request_check('notes', 'all')",
             "SELECT rag._drain_inbox(NULL, 10)",
             "SELECT rag._process_now('memos', ARRAY['1'])",
             "SELECT rag._sync_security('notes')", "SELECT rag._use_secret('x')",
             "SELECT rag._install_capture('notes')",
             "SELECT * FROM rag._source_rows('notes', 'keys', NULL)",
             f"SELECT rag._open_source_schema('{role}'::regrole::oid, 'x')",
             "SELECT rag._mark_broken('notes', 'x')", "SELECT rag._lock_out('notes')"]
    for call in calls:
        with roles.as_role(role), pytest.raises(Exception) as caught:
            db.execute(call)
        assert caught.value.sqlstate == "42501", (call, caught.value)
        assert "permission denied for function" in str(caught.value), call
    # The chunks and the queue are as they were.
    db.execute("CALL rag.process_queue('notes')")
    assert db.execute("SELECT count(*) FROM rag.notes_chunks").fetchone()[0] == 1


# --- the hijack ----------------------------------------------------------------------------

# Shadows for the built-ins pgask calls, each a closer match for the argument types pgask
# passes than the polymorphic or variadic original in pg_catalog. Each records who ran it.
SHADOWS = [
    ("unnest(text[])", "SETOF text", "SELECT pg_catalog.unnest($1)"),
    ("unnest(integer[])", "SETOF integer", "SELECT pg_catalog.unnest($1)"),
    ("unnest(bigint[])", "SETOF bigint", "SELECT pg_catalog.unnest($1)"),
    ("unnest(smallint[])", "SETOF smallint", "SELECT pg_catalog.unnest($1)"),
    ("unnest(int2vector)", "SETOF smallint", "SELECT pg_catalog.unnest($1::smallint[])"),
    ("unnest(bytea[])", "SETOF bytea", "SELECT pg_catalog.unnest($1)"),
    ("cardinality(text[])", "integer", "SELECT pg_catalog.cardinality($1)"),
    ("cardinality(integer[])", "integer", "SELECT pg_catalog.cardinality($1)"),
    ("cardinality(bigint[])", "integer", "SELECT pg_catalog.cardinality($1)"),
    ("array_remove(integer[], integer)", "integer[]", "SELECT pg_catalog.array_remove($1, $2)"),
    ("array_remove(text[], text)", "text[]", "SELECT pg_catalog.array_remove($1, $2)"),
    ("jsonb_build_object(text, text)", "jsonb",
     "SELECT pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_object(text, jsonb)", "jsonb",
     "SELECT pg_catalog.jsonb_build_object($1, $2)"),
    ("jsonb_build_array(text)", "jsonb", "SELECT pg_catalog.jsonb_build_array($1)"),
    ("format(text, text)", "text", "SELECT pg_catalog.format($1, $2)"),
    ("format(text, text, text)", "text", "SELECT pg_catalog.format($1, $2, $3)"),
    ("format(text, text, integer)", "text", "SELECT pg_catalog.format($1, $2, $3)"),
    ("concat_ws(text, text, text)", "text", "SELECT pg_catalog.concat_ws($1, $2, $3)"),
    ("ts_filter(tsvector, text)", "tsvector",
     "SELECT pg_catalog.ts_filter($1, $2::\"char\"[])"),
    ("setweight(tsvector, text, text[])", "tsvector",
     "SELECT pg_catalog.setweight($1, $2::\"char\", $3)"),
    ("to_tsvector(text, text)", "tsvector", "SELECT pg_catalog.to_tsvector($1::regconfig, $2)"),
    ("array_position(text[], text)", "integer", "SELECT pg_catalog.array_position($1, $2)"),
    ("quote_literal(text)", "text", "SELECT pg_catalog.quote_literal($1)"),
    ("jsonb_array_elements_text(jsonb)", "SETOF text",
     "SELECT pg_catalog.jsonb_array_elements_text($1)"),
    ("make_interval(secs double precision)", "interval",
     "SELECT pg_catalog.make_interval(secs => $1)"),
    ("array_to_string(text[], text)", "text", "SELECT pg_catalog.array_to_string($1, $2)"),
    ("string_to_array(text, text)", "text[]", "SELECT pg_catalog.string_to_array($1, $2)"),
    ("left(text, integer)", "text", "SELECT pg_catalog.left($1, $2)"),
]


def _plant_shadows(db, attacker: str) -> None:
    db.execute("CREATE TABLE public.hijacked (fn text, by_user name, by_session name)")
    db.execute("GRANT INSERT, SELECT ON public.hijacked TO PUBLIC")
    db.execute(f"ALTER TABLE public.hijacked OWNER TO {attacker}")
    db.execute(f"GRANT CREATE ON SCHEMA public TO {attacker}")
    db.execute(f"SET ROLE {attacker}")
    try:
        for signature, returns, body in SHADOWS:
            db.execute(
                f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE sql AS $$"
                f" INSERT INTO public.hijacked VALUES ({signature!r}, current_user,"
                f" session_user); {body} $$")
        # An aggregate too: array_agg over text, closer than array_agg(anynonarray).
        db.execute(
            "CREATE FUNCTION public.hijack_step(text[], text) RETURNS text[] LANGUAGE sql AS $$"
            " INSERT INTO public.hijacked VALUES ('array_agg(text)', current_user,"
            " session_user); SELECT pg_catalog.array_append($1, $2) $$")
        db.execute("CREATE AGGREGATE public.array_agg(text) (sfunc = public.hijack_step,"
                   " stype = text[], initcond = '{}')")
    finally:
        db.execute("RESET ROLE")


@pytest.mark.slow
def test_shadow_functions_in_public_never_run(db, roles, chat_server):
    attacker = roles.make("attacker")
    writer = roles.make("writer")
    reader = roles.make("reader", "GRANT pgask_reader TO {role}")
    _plant_shadows(db, attacker)
    # The test can fail: the shadows do win for a caller whose search_path has public.
    with roles.as_role(reader):
        db.execute("SELECT unnest(ARRAY['x', 'y']), cardinality(ARRAY['a'])")
    assert db.execute("SELECT count(*) FROM public.hijacked").fetchone()[0] > 0
    db.execute("TRUNCATE public.hijacked")

    db.execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text, tags jsonb,"
               " team text)")
    db.execute("CREATE TABLE live (a int, b text, body text, PRIMARY KEY (a, b))")
    db.execute(f"GRANT SELECT ON rag.documents TO {reader}")  # rag_answer's default pipeline
    for table in ("docs", "live"):
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {table} TO {writer}")
        db.execute(f"GRANT SELECT ON {table} TO {reader}")
    db.execute("INSERT INTO docs VALUES (1, 'Vacuum', 'VACUUM reclaims dead tuples.',"
               " '{\"lang\": \"en\"}', 'db'), (2, 'Index', 'A B-tree index speeds up lookups.',"
               " '{\"lang\": \"en\"}', 'db')")
    db.execute("SELECT rag.create_pipeline('docs', 'docs', 'title || '' '' || body',"
               " title => 'title', metadata => ARRAY['tags', 'team'])")
    db.execute("SELECT rag.create_pipeline('live', 'live', ARRAY['b', 'body'], mode => 'sync')")
    db.execute("ALTER TABLE docs ENABLE ROW LEVEL SECURITY")
    db.execute("CREATE POLICY everyone ON docs USING (true)")
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo', %s)", (chat_server.url,))

    def write(conn, n):
        conn.execute("INSERT INTO docs VALUES (%s, 'WAL', 'The write-ahead log makes commits"
                     " durable.', '{\"lang\": \"en\"}', 'ops')", (n,))
        conn.execute("UPDATE docs SET body = body || ' Autovacuum runs it.' WHERE id = 1")
        conn.execute("UPDATE docs SET team = 'core' WHERE id = 2")
        conn.execute("DELETE FROM docs WHERE id = %s", (n,))
        conn.execute("INSERT INTO live VALUES (%s, 'x', 'Checkpoints flush dirty pages.'),"
                     " (%s, 'y', 'Replication slots keep WAL.')", (n, n + 1))
        conn.execute("UPDATE live SET body = 'Checkpoints write dirty buffers.' WHERE a = %s",
                     (n,))
        conn.execute("DELETE FROM live WHERE a = %s", (n + 1,))

    def use(conn):
        for mode in ("hybrid", "vector", "keyword"):
            conn.execute("SELECT * FROM rag.search('dead tuples vacuum', 3, mode => %s,"
                         " pipeline => 'docs', filter => '{\"lang\": \"en\"}')", (mode,))
        conn.execute("SELECT * FROM rag.search('dead tuples', 3, pipeline => 'docs',"
                     " options => '{\"rerank\": \"local\", \"mmr_lambda\": 0.5,"
                     " \"dedupe_threshold\": 0.99, \"fusion\": \"zscore\"}')")
        conn.execute("SELECT * FROM rag.search('checkpoints', 3, pipeline => 'live')")
        answer = conn.execute("SELECT rag.answer('What reclaims dead tuples?',"
                              " pipeline => 'docs', model => 'extractive')").fetchone()[0]
        conn.execute("SELECT rag.feedback(%s, true)", (answer["answer_id"],))
        conn.execute("SELECT rag.answer('What reclaims dead tuples?', pipeline => 'docs',"
                     " model => 'echo', options => '{\"guard\": \"flag\"}')")
        conn.execute("SELECT * FROM rag.answer_sources('What is the WAL?', 3, NULL, 'docs')")
        conn.execute("SELECT public.rag_answer('What is vacuum?')")
        conn.execute("SELECT * FROM rag.answers_daily")
        conn.execute("SELECT * FROM rag.top_unanswered")
        conn.execute("SELECT * FROM rag.document_usage")

    write(db, 10)
    db.execute("CALL rag.process_queue()")
    use(db)
    with roles.as_role(writer):
        write(db, 20)
        db.execute("TRUNCATE live")
    db.execute("CALL rag.process_queue()")
    with roles.as_role(reader):
        use(db)
    db.execute("SELECT rag.alter_pipeline('docs', metadata => ARRAY['tags'],"
               " language => 'simple')")
    db.execute("CALL rag.process_queue()")
    db.execute(f"REVOKE SELECT ON docs FROM {reader}")
    db.execute("ALTER TABLE docs DISABLE ROW LEVEL SECURITY")
    db.execute("TRUNCATE docs")
    db.execute("SELECT rag.drop_pipeline('live')")
    ran = db.execute("SELECT fn, by_user, by_session FROM public.hijacked").fetchall()
    assert ran == []


def test_pgask_runs_as_a_role_without_superuser_or_members(db, with_pipelines, roles):
    """pgask_owner owns every function of schema rag and runs the SECURITY DEFINER ones: it
    is no superuser and has no members, so no role but a superuser can change code that
    other roles run with their own rights. A pipeline admin cannot either."""
    assert db.execute(
        "SELECT DISTINCT r.rolname, r.rolsuper FROM pg_proc AS p JOIN pg_roles AS r"
        " ON r.oid = p.proowner WHERE p.pronamespace = 'rag'::regnamespace").fetchall() == [
        ("pgask_owner", False)]
    assert db.execute(
        "SELECT rolsuper, rolcreaterole, rolbypassrls, rolcreatedb, rolreplication,"
        " (SELECT count(*) FROM pg_auth_members WHERE roleid = r.oid)"
        " FROM pg_roles AS r WHERE rolname = 'pgask_owner'").fetchone() == (
        False, False, False, False, False, 0)
    admin = roles.make("admin", "GRANT pgask_admin, pgask_worker TO {role}")
    for attempt in ("CREATE OR REPLACE FUNCTION rag._on_ddl_as_runner() RETURNS event_trigger"
                    " LANGUAGE plpgsql AS $$ BEGIN END $$",
                    "ALTER FUNCTION rag._require_admin(text) SECURITY DEFINER",
                    "ALTER FUNCTION rag.search(text, integer, jsonb, text, text, jsonb)"
                    " SET search_path = rag, pg_catalog",
                    "CREATE POLICY open ON rag.notes_chunks_1 USING (true)"):
        with roles.as_role(admin), pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(attempt)
    # (SET ROLE is checked against the session's user, a superuser here: ask the catalog.)
    assert db.execute("SELECT pg_has_role(%s, 'pgask_owner', 'MEMBER')",
                      (admin,)).fetchone() == (False,)


def test_no_stored_expression_uses_what_others_can_plant(db, with_pipelines):
    """No constraint, default, policy, view, index or trigger of schema rag uses a function,
    operator or type of a schema that a role other than a superuser may create in
    (pgvector's own objects aside): planted code would run whenever the expression does.
    The check is pgask doctor's; it sees what it must (a planted operator in a constraint)."""
    from pgask.doctor import unsafe_references

    assert unsafe_references(db) == []
    db.execute("CREATE SCHEMA open_schema; GRANT CREATE ON SCHEMA open_schema TO PUBLIC")
    db.execute("CREATE FUNCTION open_schema.ok(integer) RETURNS boolean LANGUAGE sql"
               " AS 'SELECT true'")
    db.execute("ALTER TABLE rag.pipelines ADD CONSTRAINT planted CHECK (open_schema.ok(1))")
    try:
        found = unsafe_references(db)
        assert [used for _, used in found] == ["function open_schema.ok(integer)"], found
    finally:
        db.execute("ALTER TABLE rag.pipelines DROP CONSTRAINT planted")
        db.execute("DROP SCHEMA open_schema CASCADE")
