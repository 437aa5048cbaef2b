"""The offline model in Python: normalised vectors, batching, truncation, its tokenizer."""

import numpy as np
import pytest

from pgask.embedders.local import (
    DIMENSIONS,
    MAX_BATCH_ROWS,
    MAX_INPUT_TOKENS,
    count_tokens,
    get_local_embedder,
)


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


def test_batches_hold_a_budget_of_word_pieces(embedder):
    lengths = [3] * 40 + [100] * 7 + [256] * 3
    all_ids = [[0] * n for n in lengths]
    batches = list(embedder._batches(list(range(len(lengths))), all_ids))
    assert [i for batch in batches for i in batch] == list(range(len(lengths)))
    # Padded to its longest text, a batch stays within the budget; short texts share a pass
    # up to the row cap, and a text as long as the budget allows no more than itself.
    assert all(len(b) * max(lengths[i] for i in b) <= embedder.batch_tokens or len(b) == 1
               for b in batches)
    assert [len(b) for b in batches] == [MAX_BATCH_ROWS, 8, 5, 2, 2, 1]


def test_long_input_is_truncated_to_the_model_limit(embedder):
    long_text = "word " * 2000
    assert count_tokens(long_text) > MAX_INPUT_TOKENS
    head_only = " ".join(["word"] * MAX_INPUT_TOKENS)
    assert np.allclose(embedder.embed([long_text])[0], embedder.embed([head_only])[0], atol=1e-4)


def test_tokenizer_does_not_cap_at_128(embedder):
    # The shipped tokenizer.json truncates to 128 tokens unless told not to.
    assert count_tokens("word " * 300) == 300


def test_span_vectors_come_from_the_same_forward_pass(embedder):
    text = ("An index can be defined on more than one column. VACUUM reclaims the storage of "
            "dead tuples. Bananas ripen faster next to apples.")
    sentences = ["An index can be defined on more than one column.",
                 "VACUUM reclaims the storage of dead tuples.",
                 "Bananas ripen faster next to apples."]
    spans = [(text.index(s), text.index(s) + len(s)) for s in sentences]
    vectors, pooled = embedder.embed_with_spans([text, "no spans here"], [spans, []])
    # The texts' own vectors are embed's, whatever spans are asked for.
    assert np.allclose(vectors, embedder.embed([text, "no spans here"]), atol=1e-6)
    assert pooled[0].shape == (3, DIMENSIONS) and pooled[1].shape == (0, DIMENSIONS)
    assert np.allclose(np.linalg.norm(pooled[0], axis=1), 1.0, atol=1e-5)
    # Read in context, each sentence is still closest to itself read alone.
    similarity = pooled[0] @ embedder.embed(sentences).T
    assert (similarity.argmax(axis=1) == [0, 1, 2]).all()


def test_a_span_the_model_does_not_see_whole_gets_no_vector(embedder):
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    first, last = (0, len("Sentence number 0 is here.")), (len(text) - 28, len(text))
    _, (pooled,) = embedder.embed_with_spans([text], [[first, last, (5, 5)]])
    assert not np.isnan(pooled[0]).any()
    assert np.isnan(pooled[1]).all()  # past the 256 word pieces the model reads
    assert np.isnan(pooled[2]).all()  # an empty span holds no token
