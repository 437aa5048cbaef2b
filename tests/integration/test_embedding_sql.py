"""rag.embed in SQL: the same vectors as the Python model, arrays in order with NULLs kept."""

import numpy as np
import pytest

from pgask.embedders.local import DIMENSIONS, get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def test_sql_embed_matches_python(db, embedder):
    (vector,) = db.execute("SELECT rag.embed('PostgreSQL full text search')::text").fetchone()
    from_sql = np.array([float(x) for x in vector.strip("[]").split(",")])
    assert from_sql.shape == (DIMENSIONS,)
    assert from_sql @ embedder.embed(["PostgreSQL full text search"])[0] > 0.9999


def test_sql_embed_array_keeps_order_and_nulls(db):
    row = db.execute(
        "SELECT (rag.embed(ARRAY['cat', NULL, 'dog']))[1] <=> rag.embed('cat'),"
        " (rag.embed(ARRAY['cat', NULL, 'dog']))[2] IS NULL,"
        " (rag.embed(ARRAY['cat', NULL, 'dog']))[3] <=> rag.embed('dog'),"
        " rag.embed(NULL::text) IS NULL"
    ).fetchone()
    assert row[0] < 1e-5 and row[1] is True and row[2] < 1e-5 and row[3] is True
