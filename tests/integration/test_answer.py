"""rag.answer and rag_answer: cited extractive answers, and "I don't know"."""

import re

import psycopg
import pytest

from fix_db import add_document
from pgask.answering.extractive import NO_ANSWER

INDEXES = """Multicolumn Indexes

An index can be defined on more than one column of a table. For example, if you have a table
of this form, a multicolumn B-tree index is created with CREATE INDEX test2_mm_idx ON test2
(major, minor). Currently, only the B-tree, GiST, GIN, and BRIN index types support
multiple-key-column indexes.

A multicolumn B-tree index can be used with query conditions that involve any subset of the
index's columns, but the index is most efficient when there are constraints on the leading
(leftmost) columns."""

VACUUM = """VACUUM reclaims storage occupied by dead tuples. In normal PostgreSQL operation,
tuples that are deleted or obsoleted by an update are not physically removed from their table;
they remain present until a VACUUM is done."""


@pytest.fixture
def corpus(db):
    return {
        "indexes": add_document(db, "indexes-multicolumn.html", INDEXES, "Multicolumn Indexes"),
        "vacuum": add_document(db, "sql-vacuum.html", VACUUM, "VACUUM"),
    }


def test_answer_shape_and_citations(db, corpus):
    (result,) = db.execute("SELECT rag.answer('How do I create a B-tree index on two columns?')"
                           ).fetchone()
    assert result["mode"] == "extractive"
    assert "multicolumn B-tree index is created with CREATE INDEX" in result["answer"]
    assert "[1]" in result["answer"]
    first = result["citations"][0]
    assert first["n"] == 1
    assert first["document_id"] == str(corpus["indexes"])
    assert first["title"] == "Multicolumn Indexes"
    assert first["source"] == "indexes-multicolumn.html"
    start, end = first["span"]
    assert INDEXES[start:end].split() == INDEXES[start:end].split()  # span is in the document
    assert "CREATE INDEX test2_mm_idx" in INDEXES[start:end]
    assert [c["n"] for c in result["citations"]] == list(range(1, len(result["citations"]) + 1))
    # Every marker in the text points at a listed citation.
    for n in range(1, 10):
        if f"[{n}]" in result["answer"]:
            assert n <= len(result["citations"])
    assert result["model"] == "all-MiniLM-L6-v2-int8"
    assert len(result["retrieved"]) == 2


def test_answer_sentences_come_from_the_documents(db, corpus):
    (result,) = db.execute("SELECT rag.answer('What does VACUUM reclaim?', 2)").fetchone()
    assert result["mode"] == "extractive"
    normalised = " ".join((INDEXES + " " + VACUUM).split())
    sentences = [s for s in re.split(r"\s*\[\d+\]\s*", result["answer"]) if s]
    assert sentences
    for sentence in sentences:
        assert sentence in normalised


def test_unrelated_question_is_i_dont_know(db, corpus):
    (result,) = db.execute("SELECT rag.answer('Who won the football world cup in 1998?')"
                           ).fetchone()
    assert result["mode"] == "no_answer"
    assert result["answer"] == NO_ANSWER
    assert result["citations"] == []


def test_empty_index_is_i_dont_know(db):
    (result,) = db.execute("SELECT rag.answer('What is an index?')").fetchone()
    assert (result["mode"], result["citations"]) == ("no_answer", [])


def test_rag_answer_text_lists_sources(db, corpus):
    (text,) = db.execute("SELECT rag_answer('How do I create a B-tree index on two columns?')"
                         ).fetchone()
    assert "[1]" in text
    assert "\n\nSources:\n[1] Multicolumn Indexes (indexes-multicolumn.html)" in text


def test_rag_answer_unrelated(db, corpus):
    (text,) = db.execute("SELECT rag_answer('What is the boiling point of gold?')").fetchone()
    assert text == NO_ANSWER


@pytest.mark.parametrize(("call", "message"), [
    ("rag_answer(NULL)", "rag.answer: question must be a non-empty text, got NULL"),
    ("rag_answer('')", "rag.answer: question must be a non-empty text, got ''"),
    ("rag.answer('q', 0)", "rag.answer: k must be between 1 and 50, got 0"),
    ("rag.answer('q', 51)", "rag.answer: k must be between 1 and 50, got 51"),
    ("rag.chunk('q', 0)", "rag.chunk: max_tokens must be between 1 and 8192, got 0"),
    ("rag.chunk('q', 10, 10)", "rag.chunk: overlap must be >= 0 and < max_tokens (10), got 10"),
])
def test_bad_arguments_give_clear_errors_without_traceback(db, call, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as excinfo:
        db.execute(f"SELECT * FROM {call}")
    diag = excinfo.value.diag
    assert diag.message_primary == message
    assert "Traceback" not in (diag.context or "")


def test_long_question_is_answered_and_a_huge_one_refused(db, corpus):
    question = "How do I create a B-tree index on two columns? " * 200  # 9,600 characters
    (result,) = db.execute("SELECT rag.answer(%s)", (question,)).fetchone()
    assert result["mode"] in ("extractive", "no_answer")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as excinfo:
        db.execute("SELECT rag.answer(%s)", ("x" * 10_001,))
    assert excinfo.value.diag.message_primary == (
        "rag.answer: question must be at most 10000 characters, got 10001")


def test_chunks_keep_their_sentences_vectors_and_answers_read_them(db, corpus):
    from pgask.answering import sentence_vectors
    from pgask.answering.extractive import sentence_spans
    from pgask.embedders.local import DIMENSIONS

    rows = db.execute("SELECT content, sentence_spans, sentence_vectors"
                      " FROM rag.documents_chunks").fetchall()
    assert rows
    for content, spans, blob in rows:
        stored = sentence_vectors.decode(spans, blob, DIMENSIONS)
        assert list(stored) == sentence_spans(content)
    question = "How do I create a B-tree index on two columns?"
    (before,) = db.execute("SELECT rag.answer(%s)", (question,)).fetchone()
    assert before["mode"] == "extractive"
    # Stored vectors that match no question: the answerer took them instead of embedding the
    # sentences again, so nothing is close enough to answer.
    db.execute("UPDATE rag.documents_chunks SET sentence_vectors ="
               " decode(repeat('00', 2 * %s * (cardinality(sentence_spans) / 2)), 'hex')",
               (DIMENSIONS,))
    (after,) = db.execute("SELECT rag.answer(%s)", (question,)).fetchone()
    assert after["mode"] == "no_answer"


def test_chunks_without_sentence_vectors_still_answer_and_get_them_when_processed(db, corpus):
    # As rows written before the columns existed: the answerer embeds their sentences itself.
    db.execute("UPDATE rag.documents_chunks SET sentence_spans = NULL, sentence_vectors = NULL")
    (result,) = db.execute("SELECT rag.answer('What does VACUUM reclaim?')").fetchone()
    assert result["mode"] == "extractive"
    assert "VACUUM reclaims storage occupied by dead tuples" in result["answer"]
    # Processing the document again computes them, although its embedded text is unchanged
    # (new metadata), so its chunk's vector could have been reused as it was.
    db.execute("UPDATE rag.documents SET metadata = '{\"team\": \"dba\"}' WHERE id = %s",
               (corpus["vacuum"],))
    assert db.execute("SELECT count(*) FILTER (WHERE sentence_vectors IS NULL), count(*)"
                      " FROM rag.documents_chunks WHERE document_id = %s",
                      (str(corpus["vacuum"]),)).fetchone() == (0, 1)
