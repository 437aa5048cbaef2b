"""rag.answer's extractive "I don't know" (issue 15 item 4): a question on the documents'
topic that they do not answer is declined, an answerable one on the same documents answered.

The unanswerable question is close to the corpus (its best sentence is on topic, so neither the
off-topic gate nor the similarity floor declines it): it is the answerability scorer that has
to see that the sentences do not answer it."""

from fix_db import add_document
from pgask.answering.extractive import NO_ANSWER

NORMANS = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to "
    "Normandy, a region in France. They were descended from Norse raiders and pirates from "
    "Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to King "
    "Charles III of West Francia. The distinct cultural and ethnic identity of the Normans "
    "emerged initially in the first half of the 10th century, and it continued to evolve over "
    "the succeeding centuries.")


def answer(db, question):
    (result,) = db.execute("SELECT rag.answer(%s, model => 'extractive')",
                           (question,)).fetchone()
    return result


def test_an_unanswerable_question_on_topic_is_declined_and_an_answerable_one_answered(db):
    add_document(db, "normans.md", NORMANS, "Normans")
    answered = answer(db, "Who was the leader of the Norse raiders?")
    assert answered["mode"] == "extractive"
    assert "under their leader Rollo" in answered["answer"]
    assert answered["citations"][0]["source"] == "normans.md"

    # a negation the text lacks; a people and a year it does not name
    for question in ("Who was not the leader of the Norse raiders?",
                     "Who was the leader of the Danish raiders in 1066?"):
        declined = answer(db, question)
        assert (declined["mode"], declined["answer"], declined["citations"]) == (
            "no_answer", NO_ANSWER, []), question
