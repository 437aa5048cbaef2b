"""rag.search: nearest chunks over the HNSW index, with clear errors for bad arguments."""

import psycopg
import pytest

from fix_db import add_document

DOCS = {
    "btree.md": ("B-tree indexes", "CREATE INDEX ON orders (customer_id, created_at) builds a "
                 "multicolumn B-tree index that serves equality and range queries."),
    "fts.md": ("Full text search", "to_tsvector and to_tsquery match documents against search "
               "terms; a GIN index makes full text search fast."),
    "vacuum.md": ("VACUUM", "VACUUM reclaims storage occupied by dead tuples left behind by "
                  "updates and deletes."),
}


@pytest.fixture
def corpus(db):
    return {source: add_document(db, source, content, title)
            for source, (title, content) in DOCS.items()}


def test_returns_k_rows_best_first(db, corpus):
    rows = db.execute("SELECT * FROM rag.search('how do I index two columns?', 2)").fetchall()
    assert len(rows) == 2
    chunk_id, document_id, title, source, content, metadata, score, rank = rows[0][:8]
    assert (source, title) == ("btree.md", "B-tree indexes")
    assert document_id == str(corpus["btree.md"]) and "multicolumn" in content
    assert metadata["source"] == "btree.md"
    assert rows[0][6] >= rows[1][6]
    assert [r[7] for r in rows] == [1, 2]


def test_usable_in_joins(db, corpus):
    rows = db.execute(
        "SELECT d.source FROM rag.search('dead tuples', 1) s JOIN rag.documents d"
        " ON d.id = s.document_id::bigint"
    ).fetchall()
    assert rows == [("vacuum.md",)]


@pytest.mark.parametrize(("call", "message"), [
    ("rag.search(NULL, 5)", "rag.search: query must be a non-empty text, got NULL"),
    ("rag.search('  ', 5)", "rag.search: query must be a non-empty text, got '  '"),
    ("rag.search('x', 0)", "rag.search: k must be between 1 and 1000, got 0"),
    ("rag.search('x', 1001)", "rag.search: k must be between 1 and 1000, got 1001"),
    ("rag.search('x', NULL)", "rag.search: k must be between 1 and 1000, got NULL"),
])
def test_bad_arguments(db, call, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as excinfo:
        db.execute(f"SELECT * FROM {call}")
    assert excinfo.value.diag.message_primary == message


def test_empty_index_returns_no_rows(db):
    assert db.execute("SELECT * FROM rag.search('anything', 5)").fetchall() == []


def test_a_candidate_gone_before_its_row_is_read_gives_its_place_to_the_next(db, corpus):
    """rag.search reads the rows of the k candidates it returns only (their content is what
    costs); one deleted between the scan and that read (here: ids that never existed) is
    replaced by the next candidate, so k rows still come back while candidates remain."""
    ids = [r[0] for r in db.execute("SELECT id FROM rag.documents_chunks ORDER BY id")]
    notices = []
    db.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    fused = [(-1, 0.9), (ids[0], 0.8), (-2, 0.7), (ids[1], 0.6), (ids[2], 0.5)]
    db.execute("DO $body$\n"
               "from pgask import pipelines\n"
               "from pgask.retrieval import search\n"
               "p = pipelines.load(plpy, 'documents')\n"
               f"ranked = search._fetch_ranked(plpy, p, {fused!r}, False, 2)\n"
               "plpy.notice(repr([(row['chunk_id'], score) for row, score in ranked]))\n"
               "$body$ LANGUAGE plpython3u")
    assert notices == [repr([(ids[0], 0.8), (ids[1], 0.6)])]
