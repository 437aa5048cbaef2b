"""A pipeline's chunk store as a Citus distributed table (issue 14): on a real coordinator
with two workers, a distributed pipeline finds the same chunks with the same scores as a
plain pipeline over the same rows, in every mode and with filters, while the queue keeps
writing into the shards. Needs Citus installed (see fix_citus); the test of the error without
Citus runs everywhere."""

from __future__ import annotations

import json
import random

import psycopg
import pytest
from psycopg import sql

SHARDS = 8
TOPICS = {
    "db": ["index", "vacuum", "replica", "btree", "query", "planner", "table", "shard",
           "transaction", "checkpoint", "wal", "lock"],
    "ml": ["embedding", "vector", "model", "cosine", "token", "attention", "layer",
           "gradient", "training", "dataset", "inference", "batch"],
}
FILLER = ["the", "a", "with", "over", "under", "and", "slowly", "quickly", "every", "some"]
QUERIES = ["vacuum checkpoint wal", "cosine vector embedding model", "replica lag of a query",
           "btree index planner", "training batch gradient"]


def article(i: int) -> tuple[int, str, str, str]:
    """A short article of one topic with varied term counts, so BM25's statistics matter."""
    rng = random.Random(i)
    team = "db" if i % 3 else "ml"
    words = [rng.choice(TOPICS[team] if rng.random() < 0.6 else FILLER)
             for _ in range(rng.randint(12, 40))]
    return i, f"Note {i} {rng.choice(TOPICS[team])}", " ".join(words) + f". Note number {i}.", team


def results(conn, pipeline: str, query: str, mode: str, filter_: dict | None = None):
    """rag.search rows keyed by (document_id, content): chunk ids differ between pipelines."""
    rows = conn.execute(
        "SELECT document_id, content, score, vector_score, keyword_score, rank"
        " FROM rag.search(%s, 5, %s, %s, %s) ORDER BY rank",
        (query, None if filter_ is None else json.dumps(filter_), mode, pipeline)).fetchall()
    return [((r[0], r[1]), r[2], r[3], r[4]) for r in rows]


@pytest.fixture(scope="module")
def pipelines(citus_cluster):
    """Pipelines 'plain' and 'dist' over one source table; 'dist' is distributed after its
    first chunks exist, and later writes reach it through the queue."""
    conn = citus_cluster.connect()
    conn.execute("CREATE TABLE articles (id integer PRIMARY KEY, title text NOT NULL,"
                 " body text NOT NULL, team text NOT NULL)")
    for name in ("plain", "dist"):
        conn.execute("SELECT rag.create_pipeline(%s, 'articles', 'body', title => 'title',"
                     " metadata => ARRAY['team'])", (name,))
    insert = "INSERT INTO articles VALUES (%s, %s, %s, %s)"
    conn.cursor().executemany(insert, [article(i) for i in range(1, 19)])
    conn.execute("CALL rag.process_queue()")
    conn.execute("SELECT rag.distribute_pipeline('dist', %s)", (SHARDS,))
    conn.cursor().executemany(insert, [article(i) for i in range(19, 31)])
    conn.execute("UPDATE articles SET body = body || ' vacuum wal checkpoint.' WHERE id IN (2, 20)")
    conn.execute("DELETE FROM articles WHERE id IN (4, 21)")
    conn.execute("CALL rag.process_queue()")
    yield conn
    conn.close()


@pytest.mark.citus
def test_the_chunk_table_is_sharded_by_document(pipelines):
    conn = pipelines
    shards = conn.execute(
        "SELECT count(*), count(DISTINCT nodeport) FROM citus_shards"
        " WHERE table_name = 'rag.dist_chunks_1'::regclass").fetchone()
    assert shards == (SHARDS, 2)
    (kind, column) = conn.execute(
        "SELECT citus_table_type, distribution_column FROM citus_tables"
        " WHERE table_name = 'rag.dist_chunks_1'::regclass").fetchone()
    assert (kind, column) == ("distributed", "document_id")
    # The plain pipeline stays a local table with its trigger-kept statistics.
    assert conn.execute("SELECT count(*) FROM citus_tables WHERE table_name ="
                        " 'rag.plain_chunks_1'::regclass").fetchone() == (0,)


@pytest.mark.citus
def test_the_queue_keeps_the_shards_fresh(pipelines):
    conn = pipelines
    status = conn.execute("SELECT pipeline, pending, failed, done FROM rag.pipeline_status"
                          " WHERE pipeline IN ('dist', 'plain') ORDER BY pipeline").fetchall()
    assert [s[:3] for s in status] == [("dist", 0, 0), ("plain", 0, 0)]
    chunks = {name: conn.execute(
        f"SELECT document_id, ordinal, content, embed_hash FROM rag.{name}_chunks"
        " ORDER BY document_id::int, ordinal").fetchall() for name in ("plain", "dist")}
    assert chunks["dist"] == chunks["plain"]
    ids = {int(r[0]) for r in chunks["dist"]}
    assert ids == set(range(1, 31)) - {4, 21}
    updated = [r[2] for r in chunks["dist"] if r[0] == "20"]
    assert any("vacuum wal checkpoint" in text for text in updated)


@pytest.mark.citus
@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
@pytest.mark.parametrize("filter_", [None, {"team": "ml"}], ids=["all", "filtered"])
def test_search_equals_the_single_node_pipeline(pipelines, mode, filter_):
    conn = pipelines
    found = 0
    for query in QUERIES:
        plain = results(conn, "plain", query, mode, filter_)
        dist = results(conn, "dist", query, mode, filter_)
        found += len(plain)
        assert [r[0] for r in dist] == [r[0] for r in plain], query
        for got, expected in zip(dist, plain, strict=True):
            # BM25 from global statistics: equal up to the order of a sum's terms. Anything
            # from vectors only to float32 precision: each pipeline embeds its own chunks, and
            # the model's output for a text changes in the last bits with the batch it was
            # padded in (seen: one cosine 7e-9 apart once the two queues batched differently).
            exact = {"rel": 1e-12}
            from_vectors = {"abs": 1e-6}
            tolerances = (exact if mode == "keyword" else from_vectors, from_vectors, exact)
            for value, reference, tolerance in zip(got[1:], expected[1:], tolerances,
                                                   strict=True):
                assert value == (None if reference is None else
                                 pytest.approx(reference, **tolerance)), query
        if filter_:
            assert all(conn.execute("SELECT team FROM articles WHERE id = %s",
                                    (int(key[0]),)).fetchone() == ("ml",) for key, *_ in dist)
    assert found >= 2 * len(QUERIES), f"{mode} search found too little to compare"


@pytest.mark.citus
def test_keyword_statistics_stay_global_and_exact(pipelines):
    """The statistics the writers keep for the distributed table equal a fresh count over its
    shards and the trigger-kept figures of the plain pipeline over the same rows."""
    conn = pipelines
    lexemes = ["vacuum", "wal", "checkpoint", "cosin", "vector", "note"]
    query = " | ".join(lexemes)
    kept = conn.execute("SELECT lexeme, idf, avgdl FROM rag._bm25_idf('dist_chunks_1', %s)"
                        " ORDER BY lexeme", (lexemes,)).fetchall()
    exact = conn.execute("SELECT lexeme, idf, avgdl FROM rag._bm25_idf_exact("
                         "'dist_chunks_1', %s, %s::tsquery) ORDER BY lexeme",
                         (lexemes, query)).fetchall()
    plain = conn.execute("SELECT lexeme, idf, avgdl FROM rag._bm25_idf('plain_chunks_1', %s)"
                         " ORDER BY lexeme", (lexemes,)).fetchall()
    assert len(kept) == len(lexemes)
    assert kept == exact == plain
    totals = conn.execute("SELECT store, chunks, total_length FROM rag.bm25_stats"
                          " WHERE store IN ('dist_chunks_1', 'plain_chunks_1') ORDER BY store"
                          ).fetchall()
    assert totals[0][1:] == totals[1][1:]
    assert conn.execute(
        "SELECT count(*) FROM rag.bm25_terms AS d FULL JOIN (SELECT * FROM rag.bm25_terms"
        " WHERE store = 'plain_chunks_1') AS p USING (lexeme) WHERE d.store = 'dist_chunks_1'"
        " AND d.df IS DISTINCT FROM p.df").fetchone() == (0,)


@pytest.mark.citus
def test_vector_search_runs_on_every_shards_hnsw_index(pipelines):
    conn = pipelines
    conn.execute("SET citus.explain_all_tasks = on")
    (vector,) = conn.execute("SELECT rag.embed('vacuum checkpoint', 'local')::text").fetchone()
    # (A literal: Citus 12.1 fails EXPLAIN with bound parameters.)
    plan = "\n".join(r[0] for r in conn.execute(sql.SQL(
        "EXPLAIN SELECT id FROM rag.dist_chunks ORDER BY embedding <=> {}::vector LIMIT 5"
    ).format(sql.Literal(vector))))
    assert "Citus Adaptive" in plan
    assert f"Task Count: {SHARDS}" in plan
    # Every shard returns its own top 5 (the coordinator merges them) and uses its own HNSW
    # index (except where a shard is so small that the planner sorts it instead).
    assert plan.count("->  Limit") == SHARDS
    assert "Index Scan using dist_chunks_1_hnsw" in plan


@pytest.mark.citus
def test_reembed_builds_the_new_set_distributed(pipelines):
    conn = pipelines
    conn.execute("SELECT rag.create_embedder('local_b', 'local')")
    conn.execute("SELECT rag.create_pipeline('moved', 'articles', 'body', title => 'title')")
    conn.execute("CALL rag.process_queue('moved')")
    conn.execute("SELECT rag.distribute_pipeline('moved', 4)")
    conn.execute("SELECT rag.reembed('moved', 'local_b')")
    shards = "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = %s::regclass"
    assert conn.execute(shards, ("rag.moved_chunks_2",)).fetchone() == (4,)
    conn.execute("CALL rag.process_queue('moved')")
    assert conn.execute("SELECT active_set, embedder FROM rag.pipelines WHERE name = 'moved'"
                        ).fetchone() == (2, "local_b")
    assert conn.execute("SELECT to_regclass('rag.moved_chunks_1')").fetchone() == (None,)
    assert conn.execute(shards, ("rag.moved_chunks_2",)).fetchone() == (4,)
    for query in QUERIES:
        moved = results(conn, "moved", query, "keyword")
        plain = results(conn, "plain", query, "keyword")
        assert [r[0] for r in moved] == [r[0] for r in plain], query
        assert [r[1] for r in moved] == pytest.approx([r[1] for r in plain], rel=1e-12), query


@pytest.mark.citus
def test_distributing_a_source_with_row_level_security_is_refused(pipelines):
    conn = pipelines
    conn.execute("CREATE TABLE private_notes (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("ALTER TABLE private_notes ENABLE ROW LEVEL SECURITY")
    conn.execute("SELECT rag.create_pipeline('private', 'private_notes', 'body')")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        conn.execute("SELECT rag.distribute_pipeline('private')")
    assert ("the source public.private_notes of pipeline private has row-level security"
            in str(caught.value))


@pytest.mark.citus
def test_distribute_checks_the_shard_count(pipelines):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        pipelines.execute("SELECT rag.distribute_pipeline('plain', 0)")
    assert "shard_count must be between 1 and 4096, got 0" in str(caught.value)


def test_distribute_without_citus_says_what_is_missing(db):
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as caught:
        db.execute("SELECT rag.distribute_pipeline('documents')")
    assert "the citus extension is not installed in this database" in str(caught.value)
