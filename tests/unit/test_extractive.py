"""The extractive answerer, with the real model and hand-made passages."""

import pytest

from pgask.answering.extractive import NO_ANSWER, Passage, extractive_answer
from pgask.answering.keywords import keyword_scores, terms
from pgask.embedders.local import get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def passage(chunk_id, content, char_start=0, title="t", score=1.0):
    return Passage(content, title, chunk_id=chunk_id, document_id=chunk_id * 10,
                   source=f"src{chunk_id}", char_start=char_start, score=score)


def ask(embedder, text, passages, **kwargs):
    return extractive_answer(embedder.embed([text])[0], passages, embedder.embed, **kwargs)


def test_picks_the_answering_sentence_and_cites_it(embedder):
    passages = [
        passage(1, "The weather was fine. Bananas are yellow when ripe."),
        passage(2, "Intro text here. To remove dead rows, run VACUUM on the table. Done.",
                char_start=100),
    ]
    question = "How do I remove dead rows from a table?"
    for answer in (ask(embedder, question, passages),
                   ask(embedder, question, passages, question=question)):
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


def test_near_duplicate_sentences_are_cited_once(embedder):
    question = "What speeds up full text search?"
    passages = [passage(1, "A GIN index speeds up full text search queries."),
                passage(2, "A GIN index greatly speeds up full-text search queries.")]
    answer = ask(embedder, question, passages, question=question, max_sentences=3)
    assert answer.text.count("GIN") == 1
    assert len(answer.citations) == 1


def test_max_sentences_bounds_the_answer(embedder):
    text = ("Indexes speed up queries that filter on a column. B-tree indexes serve equality "
            "and range queries. GIN indexes speed up queries on arrays and documents. Hash "
            "indexes speed up equality queries only. BRIN indexes speed up queries on huge "
            "tables ordered by a column.")
    question = "Do indexes speed up queries?"
    # similarity alone (no question text): every sentence is within the cutoff
    answers = [ask(embedder, question, [passage(1, text)], question=None, max_sentences=n,
                   relative_cutoff=1.0, min_answerable=-1.0) for n in (2, 4)]
    assert [a.text.count("[1]") for a in answers] == [2, 4]
    # with the question's words: the first sentence covers them, the others add nothing
    covered = ask(embedder, question, [passage(1, text)], question=question, max_sentences=4,
                  relative_cutoff=1.0, min_answerable=-1.0)
    assert covered.text == "Indexes speed up queries that filter on a column. [1]"


def test_a_second_sentence_joins_only_for_a_term_the_first_lacks(embedder):
    text = ("Autovacuum launches a worker every minute. The naptime setting changes that "
            "interval. Autovacuum workers skip locked tables.")
    question = "How often does autovacuum launch a worker, and which setting changes it?"
    answer = ask(embedder, question, [passage(1, text)], question=question, max_sentences=3,
                 relative_cutoff=1.0, min_answerable=-1.0)
    assert "every minute" in answer.text and "naptime setting" in answer.text
    assert "skip locked" not in answer.text


# Embedding similarity alone prefers the sentence that sounds like the question; the one that
# answers it names the term the other sentences do not share.
STORAGE = ("Storage parameters change how a table stores its rows on disk. Each table can have "
           "several storage parameters, set with ALTER TABLE. A fillfactor below 100 leaves "
           "room on each page so that updated rows can stay there. Index storage parameters "
           "are separate from table ones.")
STORAGE_QUESTION = "What does the fillfactor storage parameter do?"
SOUNDS_LIKE = "Storage parameters change how a table stores its rows on disk. [1]"
ANSWERS = ("A fillfactor below 100 leaves room on each page so that updated rows can stay "
           "there. [1]")


def test_keyword_overlap_finds_the_sentence_that_names_the_terms(embedder):
    passages = [passage(1, STORAGE)]
    kwargs = {"max_sentences": 1}
    assert ask(embedder, STORAGE_QUESTION, passages, **kwargs).text == SOUNDS_LIKE
    kwargs["question"] = STORAGE_QUESTION
    assert ask(embedder, STORAGE_QUESTION, passages, keyword_weight=0.0,
               **kwargs).text == SOUNDS_LIKE
    assert ask(embedder, STORAGE_QUESTION, passages, **kwargs).text == ANSWERS


def test_keyword_scores_weigh_terms_the_sentences_do_not_all_share():
    sentences = ["Bohemond led the crusade through Asia Minor.",
                 "Bohemond was joined by his nephew Tancred.",
                 "Bohemond returned to Italy."]
    scores = keyword_scores("Who was Bohemond's nephew?", sentences)
    assert scores.argmax() == 1 and scores[1] > 2 * scores[0]
    assert scores[0] == scores[2] > 0  # "Bohemond" counts, but little: every sentence has it
    assert keyword_scores("Who was it?", sentences).tolist() == [0, 0, 0]  # stopwords only
    assert terms("Who founded Harvard's libraries?") == terms("founding harvard library")


def test_similarity_threshold_decides_i_dont_know(embedder):
    passages = [passage(1, STORAGE)]
    answered = ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION)
    best = answered.best_similarity
    assert answered.mode == "extractive" and 0.4 < best < 0.95
    refused = ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION,
                  min_similarity=best + 0.01)
    assert (refused.mode, refused.text, refused.citations) == ("no_answer", NO_ANSWER, [])
    assert refused.best_similarity == pytest.approx(best)
    # Keyword overlap changes which sentence answers, never whether one does.
    for weight in (0.0, 1.0):
        assert ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION,
                   keyword_weight=weight, min_similarity=best + 0.01).mode == "no_answer"
        assert ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION,
                   keyword_weight=weight, min_similarity=best - 0.01).mode == "extractive"


def test_off_topic_retrieval_means_no_answer(embedder):
    passages = [passage(1, STORAGE, score=0.2), passage(2, "Ships burn oil.", score=0.24)]
    answer = ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION)
    assert answer.mode == "no_answer" and answer.best_similarity is None
    passages[0] = passage(1, STORAGE, score=0.25)
    # past the gate (the answerability scorer, tested on its own, set aside)
    assert ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION,
               min_answerable=-1.0).mode == "extractive"


def test_the_answerability_scorer_decides_i_dont_know(embedder):
    passages = [passage(1, STORAGE, score=0.6)]
    kept = ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION)
    assert kept.mode == "extractive" and 0.0 < kept.answerable < 1.0
    refused = ask(embedder, STORAGE_QUESTION, passages, question=STORAGE_QUESTION,
                  min_answerable=kept.answerable + 0.01)
    assert (refused.mode, refused.text, refused.answerable) == (
        "no_answer", NO_ANSWER, kept.answerable)
    # a negation the sentences lack lowers the probability
    negated = "What does the fillfactor storage parameter not do?"
    assert ask(embedder, negated, passages, question=negated,
               min_answerable=-1.0).answerable < kept.answerable
