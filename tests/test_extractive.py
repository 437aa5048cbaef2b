"""The extractive answerer, with the real model and hand-made passages."""

import pytest

from pgask.answering.extractive import NO_ANSWER, Passage, extractive_answer
from pgask.embedders.local import get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def passage(chunk_id, content, char_start=0, title="t"):
    return Passage(chunk_id, chunk_id * 10, title, f"src{chunk_id}", content, char_start)


def ask(embedder, question, passages, **kwargs):
    return extractive_answer(embedder.embed([question])[0], passages, embedder.embed, **kwargs)


def test_picks_the_answering_sentence_and_cites_it(embedder):
    passages = [
        passage(1, "The weather was fine. Bananas are yellow when ripe."),
        passage(2, "Intro text here. To remove dead rows, run VACUUM on the table. Done.",
                char_start=100),
    ]
    answer = ask(embedder, "How do I remove dead rows from a table?", passages)
    assert answer.mode == "extractive"
    assert answer.text.startswith("To remove dead rows, run VACUUM on the table. [1]")
    citation = answer.citations[0]
    assert (citation.n, citation.chunk_id, citation.document_id) == (1, 2, 20)
    content = passages[1].content
    start, end = citation.span
    assert content[start - 100:end - 100] == "To remove dead rows, run VACUUM on the table."


def test_no_passages_or_nothing_close_means_no_answer(embedder):
    assert ask(embedder, "anything?", []).text == NO_ANSWER
    far = ask(embedder, "Who painted the Mona Lisa?",
              [passage(1, "The checkpointer writes dirty buffers to disk periodically.")])
    assert far.mode == "no_answer" and far.citations == [] and far.best_similarity < 0.4


def test_duplicate_sentences_are_cited_once(embedder):
    same = "A GIN index speeds up full text search queries."
    answer = ask(embedder, "What speeds up full text search?",
                 [passage(1, same), passage(2, same)], max_sentences=3)
    assert answer.text.count(same) == 1
    assert len(answer.citations) == 1


def test_max_sentences_bounds_the_answer(embedder):
    text = " ".join(f"Indexes speed up queries in case number {i}." for i in range(10))
    answer = ask(embedder, "Do indexes speed up queries?", [passage(1, text)], max_sentences=2)
    assert answer.text.count("[1]") <= 2
