"""The hostile matrix (issue 27): for each kind of code an ordinary role can own (function,
operator, cast, domain CHECK, enum and composite types with their casts, row-level security
policy, trigger, column DEFAULT), placed by a source table's owner on the key, content,
title and metadata of a pipeline's source (and in public before install:
test_a_database_with_planted_operators_installs_clean), every pgask path runs: create,
alter and drop pipeline, capture in async and sync pipelines (INSERT, UPDATE, DELETE,
TRUNCATE), the worker, the backfill, a re-embed, `pgask install` again, search in every mode,
answers, feedback, and the event triggers with GRANT, REVOKE, ALTER, RENAME and policy DDL.

Her code is a probe that records current_user and session_user and then tries RESET ROLE and
ALTER ROLE ... SUPERUSER. It may run as her (inside pgask's reader of her table) or as the
role that itself wrote her table or searched it (a writer runs her triggers and defaults, a
reader her policies: PostgreSQL's semantics); never as pgask_owner, a superuser, or a pipeline
admin. Every role here logs in as itself, as real clients do (SET ROLE from a superuser
session would let any RESET ROLE become the superuser)."""

from __future__ import annotations

import itertools
import os

import psycopg
import pytest
from consistency import queued

from pgask.doctor import unsafe_references
from pgask.install import install

_counter = itertools.count()

# Kinds of code alice can own, each: (setup SQL in her schema {s}, what she does to her table
# after the pipeline exists, the pipeline's metadata entries that use her code).
KINDS = {
    "function": (
        "CREATE FUNCTION {s}.shout(t text) RETURNS text LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('function'); RETURN upper(t); END $$",
        [],
        ["{s}.shout(team) AS loud"],
    ),
    "operator": (
        "CREATE FUNCTION {s}.glue(a text, b text) RETURNS text LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('operator'); RETURN a || b; END $$;"
        " CREATE OPERATOR {s}.### (LEFTARG = text, RIGHTARG = text, FUNCTION = {s}.glue)",
        [],
        ["team OPERATOR({s}.###) title AS glued"],
    ),
    "cast on the title": (
        "CREATE TYPE {s}.comp AS (v text);"
        " CREATE FUNCTION {s}.comp_text(c {s}.comp) RETURNS text LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('cast'); RETURN c.v; END $$;"
        " CREATE CAST ({s}.comp AS text) WITH FUNCTION {s}.comp_text({s}.comp) AS IMPLICIT",
        ["ALTER TABLE {t} ALTER COLUMN title TYPE {s}.comp USING ROW(title)::{s}.comp"],
        [],
    ),
    "domain check on the content": (
        "CREATE DOMAIN {s}.dtext AS text CHECK ({s}.probe('domain') AND VALUE IS NOT NULL)",
        ["ALTER TABLE {t} ALTER COLUMN body TYPE {s}.dtext"],
        [],
    ),
    "enum with casts in the metadata": (
        "CREATE TYPE {s}.squad AS ENUM ('sre', 'dba');"
        " CREATE FUNCTION {s}.squad_json(q {s}.squad) RETURNS json LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('enum json'); RETURN to_json(q::text); END $$;"
        " CREATE CAST ({s}.squad AS json) WITH FUNCTION {s}.squad_json({s}.squad);"
        " CREATE FUNCTION {s}.squad_text(q {s}.squad) RETURNS text LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('enum text'); RETURN 'x'; END $$;"
        " CREATE CAST ({s}.squad AS text) WITH FUNCTION {s}.squad_text({s}.squad)",
        ["ALTER TABLE {t} ALTER COLUMN team TYPE {s}.squad USING team::{s}.squad"],
        ["team"],
    ),
    "composite with casts in the metadata": (
        "CREATE TYPE {s}.tag AS (v text);"
        " CREATE FUNCTION {s}.tag_json(g {s}.tag) RETURNS json LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('composite json'); RETURN to_json(g.v); END $$;"
        " CREATE CAST ({s}.tag AS json) WITH FUNCTION {s}.tag_json({s}.tag);"
        " CREATE FUNCTION {s}.tag_text(g {s}.tag) RETURNS text LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('composite text'); RETURN g.v; END $$;"
        " CREATE CAST ({s}.tag AS text) WITH FUNCTION {s}.tag_text({s}.tag) AS ASSIGNMENT",
        ["ALTER TABLE {t} ALTER COLUMN team TYPE {s}.tag USING ROW(team)::{s}.tag"],
        ["team", "team::text AS team_text"],
    ),
    "row-level security policy": (
        "",
        ["ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
         "CREATE POLICY everyone ON {t} USING ({s}.probe('policy'))"],
        [],
    ),
    # Forced on the owner too: pgask would read as her under her policy, so the pipeline is
    # marked broken (and says how to repair it) instead; her policy still never runs as pgask.
    "forced row-level security policy": (
        "",
        ["ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
         "ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
         "CREATE POLICY everyone ON {t} USING ({s}.probe('policy'))"],
        [],
    ),
    "trigger": (
        "CREATE FUNCTION {s}.on_write() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM {s}.probe('trigger'); RETURN NULL; END $$",
        ["CREATE TRIGGER mine AFTER INSERT OR UPDATE OR DELETE ON {t}"
         " FOR EACH ROW EXECUTE FUNCTION {s}.on_write()"],
        [],
    ),
    "column default": (
        "",
        ["ALTER TABLE {t} ALTER COLUMN team SET DEFAULT"
         " CASE WHEN {s}.probe('default') THEN 'sre' END"],
        [],
    ),
}

# Her code on the key: types whose code other roles would run when they compare keys are
# refused; a domain over a built-in type is compared as that type, so its CHECK never runs.
# (setup, her change of the key's type, refused?, how a writer spells key 3 and key 2)
KEY_KINDS = {
    "enum key": ("CREATE TYPE {s}.kenum AS ENUM ('1', '2', '3', '4');"
                 " CREATE FUNCTION {s}.kenum_text(k {s}.kenum) RETURNS text LANGUAGE plpgsql"
                 " AS $$ BEGIN PERFORM {s}.probe('enum key'); RETURN k::text; END $$;"
                 " CREATE CAST ({s}.kenum AS text) WITH FUNCTION {s}.kenum_text({s}.kenum)",
                 "ALTER TABLE {t} ALTER COLUMN id TYPE {s}.kenum USING id::text::{s}.kenum",
                 True, ("'3'", "'2'")),
    "composite key": ("CREATE TYPE {s}.kcomp AS (v int);"
                      " CREATE FUNCTION {s}.kcomp_text(k {s}.kcomp) RETURNS text"
                      " LANGUAGE plpgsql AS $$ BEGIN PERFORM {s}.probe('composite key');"
                      " RETURN k.v::text; END $$;"
                      " CREATE CAST ({s}.kcomp AS text) WITH FUNCTION {s}.kcomp_text({s}.kcomp)",
                      "ALTER TABLE {t} ALTER COLUMN id TYPE {s}.kcomp USING ROW(id)::{s}.kcomp",
                      True, ("ROW(3)", "ROW(2)::{s}.kcomp")),
    "domain key": ("CREATE DOMAIN {s}.kint AS integer CHECK ({s}.probe('domain key'))",
                   "ALTER TABLE {t} ALTER COLUMN id TYPE {s}.kint",
                   False, ("3", "2")),
}

PROBE = """
CREATE FUNCTION {s}.probe(tag text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('probes.calls');
    INSERT INTO probes.log VALUES (current_user, session_user, tag);
    IF current_user::text <> ALL (%(allowed)s) THEN
        PERFORM nextval('probes.violations');
        RAISE WARNING 'pgask probe %%: ran as %%', tag, current_user;
    END IF;
    BEGIN
        RESET ROLE;
        IF current_user::text <> ALL (%(allowed)s) THEN
            PERFORM nextval('probes.violations');
            RAISE WARNING 'pgask probe %%: RESET ROLE gave %%', tag, current_user;
        END IF;
    EXCEPTION WHEN others THEN NULL;
    END;
    BEGIN
        EXECUTE format('ALTER ROLE %%I SUPERUSER', '{alice}');
    EXCEPTION WHEN others THEN NULL;
    END;
    RETURN true;
END $$;
"""


class Matrix:
    """LOGIN roles (alice owns the source, bob writes it, reader reads it, admin defines
    pipelines: a member of pgask_admin and of alice), each with a connection of its own."""

    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db
        n = f"{os.getpid()}_{next(_counter)}"
        self.names = {r: f"pgask_m_{r}_{n}" for r in ("alice", "bob", "reader", "admin")}
        for name in self.names.values():
            db.execute(f"CREATE ROLE {name} LOGIN")
        self.alice = self.names["alice"]
        self.schema = self.alice
        self.table = f"{self.schema}.notes"
        db.execute(f"GRANT pgask_admin, {self.alice} TO {self.names['admin']}")
        db.execute(f"CREATE SCHEMA {self.schema} AUTHORIZATION {self.alice}")
        db.execute(f"GRANT USAGE ON SCHEMA {self.schema} TO PUBLIC")
        # Her probe counts its calls and every call as a role it must not run as in
        # sequences: nextval survives any rollback (what pgask's reader does is rolled back
        # once its rows are copied out), so no call goes unseen.
        db.execute("CREATE SCHEMA IF NOT EXISTS probes")
        db.execute("CREATE TABLE IF NOT EXISTS probes.log (who name, session name, tag text)")
        db.execute("CREATE SEQUENCE IF NOT EXISTS probes.calls")
        db.execute("CREATE SEQUENCE IF NOT EXISTS probes.violations")
        db.execute("GRANT USAGE ON SCHEMA probes TO PUBLIC")
        db.execute("GRANT INSERT, SELECT ON probes.log TO PUBLIC")
        db.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA probes TO PUBLIC")
        info = db.info
        self.conns = {r: psycopg.connect(host=info.host, port=info.port, dbname=info.dbname,
                                         user=name, autocommit=True)
                      for r, name in self.names.items()}
        allowed = "ARRAY[" + ", ".join(
            f"'{self.names[r]}'" for r in ("alice", "bob", "reader")) + "]"
        self.as_("alice", (PROBE % {"allowed": allowed}).replace("{alice}", self.alice))

    def as_(self, role: str, sql: str, params=None):
        return self.conns[role].execute(sql.format(s=self.schema, t=self.table), params)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.db.execute("DROP SCHEMA IF EXISTS probes CASCADE")
        for name in reversed(list(self.names.values())):
            self.db.execute(f"DROP OWNED BY {name} CASCADE")
            self.db.execute(f"DROP ROLE {name}")

    def probes(self) -> list[tuple]:
        return self.db.execute("SELECT DISTINCT who::text, session::text, tag FROM probes.log"
                               " ORDER BY 3, 1").fetchall()

    def counter(self, name: str) -> int:
        (value, called) = self.db.execute(f"SELECT last_value, is_called FROM probes.{name}"
                                          ).fetchone()
        return value if called else 0

    def assert_her_code_ran_only_as_its_owner_or_its_caller(self, ran: bool = True) -> None:
        if ran:
            assert self.counter("calls") > 0, "her code never ran: the test exercised nothing"
        assert self.counter("violations") == 0, f"her code ran as: {self.probes()}"
        wrong = [p for p in self.probes()
                 if p[0] not in {self.alice, self.names["bob"], self.names["reader"]}]
        assert not wrong, f"her code ran as: {wrong}"
        assert self.db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                               (self.alice,)).fetchone() == (False,)
        assert self.db.execute("SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles"
                               " WHERE rolname = 'pgask_owner'").fetchone() == (False,)


@pytest.fixture
def matrix(db, embedding_server):
    db.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (embedding_server.url,))
    db.execute("SELECT rag.create_embedder('srv2', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (embedding_server.url,))
    made = Matrix(db)
    made.as_("alice", "CREATE TABLE {t} (id int PRIMARY KEY, title text, body text, team text)")
    made.as_("alice", "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {t} TO "
                      f"{made.names['bob']}")
    made.as_("alice", "INSERT INTO {t} VALUES (1, 'Disk', 'Disk full on the primary.', 'sre'),"
                      " (2, 'Locks', 'Lock waits on the orders table.', 'dba')")
    yield made
    made.close()


def process(db, pipeline: str) -> None:
    """The worker, as a superuser runs it."""
    for _ in range(20):
        db.execute("CALL rag.process_queue(%s)", (pipeline,))
        if not queued(db, pipeline, "pending"):
            return


def every_path(m: Matrix, metadata: list[str], changes: list[str]) -> None:
    """Every pgask path over alice's table, her code in place: definitions by the admin,
    DDL by alice, writes by bob, the worker and install by a superuser, reads by the reader."""
    db, reader = m.db, m.names["reader"]
    entries = "ARRAY[" + ", ".join(f"'{e.format(s=m.schema)}'" for e in metadata) + "]::text[]"
    m.as_("admin", "SELECT rag.create_pipeline('hostile', '{t}', 'body', title => 'title',"
                   f" metadata => {entries}, embedder => 'srv')")
    m.as_("admin", "SELECT rag.create_pipeline('hostile_sync', '{t}', 'body', title => 'title',"
                   f" metadata => {entries}, embedder => 'srv', mode => 'sync')")
    process(db, "hostile")
    for change in changes:  # her code arrives after the pipelines exist
        m.as_("alice", change)
    m.as_("alice", f"GRANT SELECT ON {{t}} TO {reader}")
    m.as_("alice", f"REVOKE SELECT ON {{t}} FROM {reader}")
    m.as_("alice", f"GRANT SELECT ON {{t}} TO {reader}")
    m.as_("alice", "CREATE POLICY extra ON {t} AS RESTRICTIVE USING (id IS NOT NULL)")
    m.as_("alice", "ALTER TABLE {t} RENAME COLUMN body TO text_body")
    # (Titles and teams copied: their types may be hers by now.)
    m.as_("bob", "INSERT INTO {t} (id, title, text_body, team) SELECT 3, title,"
                 " 'Autovacuum is behind.', team FROM {t} WHERE id = 2")
    m.as_("bob", "INSERT INTO {t} (id, title, text_body) SELECT 4, title, 'Replica lag.'"
                 " FROM {t} WHERE id = 2")  # (team: its default, if any)
    m.as_("bob", "UPDATE {t} SET text_body = 'Disk full on the standby.' WHERE id = 1")
    m.as_("bob", "DELETE FROM {t} WHERE id = 2")
    process(db, "hostile")
    process(db, "hostile_sync")
    m.as_("admin", "SELECT rag.alter_pipeline('hostile', chunker => '{{\"max_tokens\": 40}}')")
    if any("FORCE ROW LEVEL SECURITY" in change for change in changes):
        with pytest.raises(psycopg.errors.InvalidParameterValue,
                           match="row-level security is forced on"):
            db.execute("SELECT rag.reembed('hostile', 'srv2')")
    else:
        db.execute("SELECT rag.reembed('hostile', 'srv2')")
    process(db, "hostile")
    install(db)
    for mode in ("hybrid", "vector", "keyword"):
        m.as_("reader", "SELECT * FROM rag.search('disk full', 5, NULL, %s, 'hostile')", (mode,))
        m.as_("reader", "SELECT * FROM rag.search('disk full', 5, '{{\"team\": \"sre\"}}', %s,"
                        " 'hostile_sync')", (mode,))
    m.as_("reader", "SELECT * FROM rag.hostile_chunks")
    (answer,) = m.as_("reader", "SELECT rag.answer('What is full?', pipeline => 'hostile',"
                                " model => 'extractive')").fetchone()
    if answer.get("answer_id"):
        m.as_("reader", "SELECT rag.feedback(%s, true, 'ok')", (answer["answer_id"],))
    m.as_("bob", "TRUNCATE {t}")
    process(db, "hostile")
    m.as_("admin", "SELECT rag.drop_pipeline('hostile')")
    m.as_("admin", "SELECT rag.drop_pipeline('hostile_sync')")


@pytest.mark.parametrize("kind", KINDS, ids=list(KINDS))
def test_her_code_never_runs_with_pgasks_rights(matrix, kind):
    setup, changes, metadata = KINDS[kind]
    if setup:
        matrix.as_("alice", setup)
    every_path(matrix, metadata, changes)
    matrix.assert_her_code_ran_only_as_its_owner_or_its_caller()


@pytest.mark.parametrize("kind", KEY_KINDS, ids=list(KEY_KINDS))
def test_her_code_on_the_key_never_runs_with_pgasks_rights(matrix, kind):
    setup, change, refused, (three, two) = KEY_KINDS[kind]
    m = matrix
    m.as_("alice", setup)
    m.as_("admin", "SELECT rag.create_pipeline('hostile', '{t}', 'body', embedder => 'srv')")
    process(m.db, "hostile")
    m.as_("alice", change)  # after the pipeline: vetting at create time cannot help
    (broken,) = m.db.execute("SELECT broken FROM rag.pipeline_status WHERE pipeline = 'hostile'"
                             ).fetchone()
    if refused:
        assert broken and "roles other than a superuser control" in broken, broken
    else:
        assert broken is None
    m.as_("bob", "INSERT INTO {t} (id, title, body, team) VALUES"
                 f" ({three}, 'Vacuum', 'Autovacuum is behind.', 'dba')")
    m.as_("bob", f"DELETE FROM {{t}} WHERE id = {two}")
    process(m.db, "hostile")
    m.as_("alice", f"GRANT SELECT ON {{t}} TO {m.names['reader']}")
    for mode in ("hybrid", "vector", "keyword"):
        m.as_("reader", "SELECT * FROM rag.search('disk full', 5, NULL, %s, 'hostile')", (mode,))
    install(m.db)
    m.as_("admin", "SELECT rag.drop_pipeline('hostile')")
    # (A refused key type runs nothing of hers at all; a domain key runs its CHECK as the
    # writer and inside the reader.)
    m.assert_her_code_ran_only_as_its_owner_or_its_caller(ran=not refused)
    with pytest.raises(psycopg.errors.FeatureNotSupported) if refused else _nothing():
        m.as_("admin", "SELECT rag.create_pipeline('again', '{t}', 'body')")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_an_admin_who_is_not_a_member_of_the_owner_cannot_define_a_pipeline(matrix):
    """A pipeline's SQL runs as the source's owner: defining one needs that role's rights."""
    m = matrix
    m.db.execute(f"REVOKE {m.alice} FROM {m.names['admin']}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be a member of role"):
        m.as_("admin", "SELECT rag.create_pipeline('hostile', '{t}', 'body',"
                       " metadata => ARRAY['current_setting(''is_superuser'') AS su'])")


def test_a_database_with_planted_operators_installs_clean(postgresql_proc, roles):
    """A role with CREATE on public plants closer-matching operators and functions before
    `pgask install`: the install runs none of them, and no stored expression of schema rag
    names them (the catalog check that pgask doctor runs too)."""
    base = (f"postgresql://{postgresql_proc.user}@{postgresql_proc.host}:"
            f"{postgresql_proc.port}")
    name = f"pgask_planted_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            conn.execute("CREATE ROLE pgask_planter_" + str(os.getpid()))
            planter = "pgask_planter_" + str(os.getpid())
            conn.execute(f"GRANT CREATE ON SCHEMA public TO {planter}")
            conn.execute("CREATE TABLE public.planted_log (who name)")
            conn.execute("GRANT INSERT ON public.planted_log TO PUBLIC")
            conn.execute(f"SET ROLE {planter}")
            for signature, returns, body, operator in [
                ("ge(a double precision, b integer)", "boolean", "a >= b::float8",
                 "CREATE OPERATOR public.>= (LEFTARG = double precision, RIGHTARG = integer,"
                 " FUNCTION = public.ge)"),
                ("le(a integer, b integer)", "boolean", "a <= b",
                 "CREATE OPERATOR public.<= (LEFTARG = integer, RIGHTARG = integer,"
                 " FUNCTION = public.le)"),
                ("cardinality(a text[])", "integer", "pg_catalog.cardinality(a)", ""),
                ("length(a text)", "integer", "pg_catalog.length(a)", ""),
            ]:
                conn.execute(f"CREATE FUNCTION public.{signature} RETURNS {returns}"
                             " LANGUAGE sql AS $$ INSERT INTO public.planted_log"
                             f" VALUES (current_user); SELECT {body} $$")
                if operator:
                    conn.execute(operator)
            conn.execute("RESET ROLE")
            install(conn)
            assert conn.execute("SELECT count(*) FROM public.planted_log").fetchone() == (0,)
            assert unsafe_references(conn) == []
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
            conn.execute("INSERT INTO t VALUES (1, 'a note')")
            conn.execute("SELECT rag.create_pipeline('t', 't', 'body')")
            conn.execute("CALL rag.process_queue()")
            conn.execute("SELECT rag.answer('a note?', pipeline => 't')")
            assert conn.execute("SELECT count(*) FROM public.planted_log").fetchone() == (0,)
            conn.execute(f"DROP OWNED BY {planter} CASCADE")
            conn.execute(f"DROP ROLE {planter}")
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
