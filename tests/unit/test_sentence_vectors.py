"""Sentence vectors stored with a chunk: the columns' encoding, and the answerer using them."""

import numpy as np
import pytest

from pgask.answering import sentence_vectors
from pgask.answering.extractive import Passage, extractive_answer, sentence_spans
from pgask.embedders.local import DIMENSIONS, get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def test_encode_drops_unseen_spans_and_decode_restores_the_rest():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1] = np.nan
    spans, blob = sentence_vectors.encode([(0, 10), (11, 20), (21, 40)], vectors)
    assert spans == "{0,10,21,40}"
    assert len(blob) == 2 * DIMENSIONS * 2  # float16
    decoded = sentence_vectors.decode([0, 10, 21, 40], blob, DIMENSIONS)
    assert set(decoded) == {(0, 10), (21, 40)}
    assert np.allclose(decoded[(21, 40)], vectors[2], atol=1e-3)


def test_nothing_to_store_is_empty_and_columns_that_disagree_mean_none():
    # Empty, not NULL: computed, and the chunk has no sentence to cite.
    assert sentence_vectors.encode([(0, 5)], np.full((1, DIMENSIONS), np.nan)) == ("{}", b"")
    assert sentence_vectors.encode([], np.zeros((0, DIMENSIONS))) == ("{}", b"")
    assert sentence_vectors.decode([], b"", DIMENSIONS) == {}
    blob = np.zeros((2, DIMENSIONS), dtype="<f2").tobytes()
    assert sentence_vectors.decode(None, blob, DIMENSIONS) is None
    assert sentence_vectors.decode([0, 5], None, DIMENSIONS) is None
    assert sentence_vectors.decode([0, 5], blob, DIMENSIONS) is None  # two vectors, one span
    assert sentence_vectors.decode([0, 5, 6], blob[:DIMENSIONS * 2], DIMENSIONS) is None


def test_spans_are_the_sentences_the_answerer_can_cite():
    content = ("Intro. To create a unique index on title:\n```\nCREATE UNIQUE INDEX t ON films"
               " (title);\n```\nVACUUM reclaims storage of dead rows.")
    cited = [content[start:end] for start, end in sentence_spans(content)]
    assert cited[0].startswith("To create a unique index on title:")
    assert cited[0].endswith("```")  # the example goes with the sentence introducing it
    assert cited[-1] == "VACUUM reclaims storage of dead rows."
    assert all(len(c.split()) >= 4 for c in cited)  # "Intro." is too short to cite


def _stored(embedder, content):
    spans = sentence_spans(content)
    _, (pooled,) = embedder.embed_with_spans([content], [spans])
    return dict(zip(spans, pooled, strict=True))


def test_the_answerer_embeds_only_sentences_without_a_stored_vector(embedder):
    stored = Passage("VACUUM reclaims the storage occupied by dead tuples. It runs often.",
                     "VACUUM", chunk_id=1, document_id=1)
    stored = Passage(stored.content, stored.title, chunk_id=1, document_id=1,
                     sentences=_stored(embedder, stored.content))
    bare = Passage("Bananas ripen faster when kept next to apples.", "Fruit", chunk_id=2,
                   document_id=2)
    asked: list[list[str]] = []

    def embed(texts):
        asked.append(list(texts))
        return embedder.embed(texts)

    question = "What does VACUUM reclaim?"
    answer = extractive_answer(embedder.embed([question])[0], [stored, bare], embed,
                               question=question)
    assert asked == [["Bananas ripen faster when kept next to apples."]]
    assert answer.mode == "extractive"
    assert answer.text.startswith("VACUUM reclaims the storage occupied by dead tuples. [1]")

    def refuse(texts):
        raise AssertionError(f"embedded {texts}")

    again = extractive_answer(embedder.embed([question])[0], [stored], refuse, question=question)
    assert again.text == answer.text
