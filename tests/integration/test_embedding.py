"""The offline model, in Python and through rag.embed."""

import numpy as np
import pytest

from pgask.embedders.local import DIMENSIONS, MAX_INPUT_TOKENS, count_tokens, get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def test_vectors_are_normalised_384d(embedder):
    vectors = embedder.embed(["a short text", "another, somewhat longer, text about databases"])
    assert vectors.shape == (2, DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_related_texts_are_closer_than_unrelated(embedder):
    question, related, unrelated = embedder.embed([
        "How do I create an index on two columns?",
        "A multicolumn index is created with CREATE INDEX ON tbl (a, b).",
        "Bananas ripen faster next to apples.",
    ])
    assert question @ related > question @ unrelated + 0.3


def test_batching_and_order_do_not_change_vectors(embedder):
    texts = ["short", "a much longer sentence " * 20, "medium length text here"]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_long_input_is_truncated_to_the_model_limit(embedder):
    long_text = "word " * 2000
    assert count_tokens(long_text) > MAX_INPUT_TOKENS
    head_only = " ".join(["word"] * MAX_INPUT_TOKENS)
    assert np.allclose(embedder.embed([long_text])[0], embedder.embed([head_only])[0], atol=1e-4)


def test_tokenizer_does_not_cap_at_128(embedder):
    # The shipped tokenizer.json truncates to 128 tokens unless told not to.
    assert count_tokens("word " * 300) == 300


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
