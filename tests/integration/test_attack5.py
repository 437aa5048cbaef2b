"""Fifth attack round, against the fixes of the fourth (6d22673) and of the third round's
reliability findings (6e24360..5ddef92). Each test passes when pgask keeps its promise and
fails when the attack works."""

from __future__ import annotations

import psycopg
import pytest
from consistency import problems, process_all


@pytest.mark.parametrize("ddl", [
    "CREATE AGGREGATE rag_source.{victim}(integer) (sfunc = {s}.sf, stype = integer)",
    "CREATE PROCEDURE rag_source.{victim}(integer) LANGUAGE sql AS 'SELECT 1'",
])
def test_a_loan_makes_no_aggregate_or_procedure_that_breaks_another_owners_reader(cast, ddl):
    """Attack: pgask_readers fires only on CREATE FUNCTION / ALTER FUNCTION / ALTER ROUTINE,
    so during a loan of rag_source (asked for directly) CREATE AGGREGATE and CREATE PROCEDURE
    make anything there. An admin who has only alice's rights names one after the reader of
    a pipeline whose source she has no right to (the superuser's): rag._reader_shaped (only
    function of its name) now fails, and that pipeline is broken."""
    db = cast.db
    db.execute("CREATE TABLE atk_victim5 (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO atk_victim5 VALUES (1, 'hello')")
    db.execute("SELECT rag.create_pipeline('victim5', 'atk_victim5', 'body')")
    (victim,) = db.execute("SELECT p.proname FROM rag.pipelines AS r"
                           " JOIN pg_proc AS p ON p.oid = r.reader"
                           " WHERE r.name = 'victim5'").fetchone()
    cast.as_("alice", "CREATE FUNCTION {s}.sf(integer, integer) RETURNS integer"
                      " LANGUAGE sql AS 'SELECT 1'")
    conn = cast.conns["admin"]
    try:
        with conn.transaction():
            conn.execute("SELECT rag._open_source_schema(%s::regrole, 'atk5')", (cast.alice,))
            conn.execute(f"SET LOCAL ROLE {cast.alice}")
            conn.execute(ddl.format(victim=victim, s=cast.schema))
    except psycopg.Error:
        pass  # refused: what the test wants
    (problem,) = db.execute("SELECT rag._reader_problem('victim5')").fetchone()
    assert problem is None, f"an admin without rights on the source broke its reader: {problem}"


@pytest.mark.parametrize("key_type", [
    "regclass[]", "atk_rc_domain", "atk_rc_domain[]", "atk_rc_array_domain"])
def test_an_array_of_regclass_key_is_refused_or_kept_in_step(db, embedding_server, key_type):
    """Attack: reg* keys are refused (their text follows the catalog), but the check compares
    the base type's name with the reg* names, so regclass[] passes. Renaming or dropping a
    table then changes every key's text without a write: chunks stay under the old keys, the
    rows have none, and processing the queue changes nothing."""
    db.execute("SELECT rag.create_embedder('srv', 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
               (embedding_server.url,))
    db.execute("CREATE TABLE atk_o1 (); CREATE TABLE atk_o2 ()")
    # (Also a domain over regclass, an array of it, and a domain over regclass[].)
    db.execute("CREATE DOMAIN atk_rc_domain AS regclass")
    db.execute("CREATE DOMAIN atk_rc_array_domain AS regclass[]")
    db.execute(f"CREATE TABLE atk_ra (id {key_type} PRIMARY KEY, body text)")
    one, two = (("'atk_o1'", "'atk_o2'") if "[]" not in key_type and "array" not in key_type
                else ("ARRAY['atk_o1'::regclass]", "ARRAY['atk_o2'::regclass]"))
    db.execute(f"INSERT INTO atk_ra VALUES ({one}, 'ticket one'), ({two}, 'ticket two')")
    try:
        db.execute("SELECT rag.create_pipeline('ra5', 'atk_ra', 'body', embedder => 'srv')")
    except psycopg.errors.FeatureNotSupported:
        return  # refused like a regclass key: what the test wants
    process_all(db, "ra5", seconds=60)
    db.execute("ALTER TABLE atk_o1 RENAME TO atk_o1x")
    db.execute("DROP TABLE atk_o2")
    process_all(db, "ra5", seconds=60)
    found = problems(db, "ra5", "atk_ra")
    assert not found, found
