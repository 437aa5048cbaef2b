"""rag.answer's LLM query rewriting (issue 15 item 6): options hyde and multi_step.

The loopback OpenAI-shaped server answers "You said: <last user message>", and its embeddings
endpoint logs what it embedded: a pipeline on that embedder shows which text drove the vector
search."""

from __future__ import annotations

import json

import psycopg
import pytest

from fix_db import add_document
from pgask.answering.rewriting import DECOMPOSE_SYSTEM, HYDE_SYSTEM

AUTOVACUUM = ("Autovacuum launches a worker every 60 seconds by default. The setting "
              "autovacuum_naptime changes the interval.")
VACUUM = ("VACUUM reclaims storage occupied by dead tuples. Deleted tuples remain present "
          "until a VACUUM is done.")


@pytest.fixture
def echo_llm(db, chat_server):
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s)", (chat_server.url,))
    return chat_server


def ask(db, question, options=None, **kwargs):
    args = "".join(f", {k} => %({k})s" for k in kwargs)
    (result,) = db.execute(f"SELECT rag.answer(%(q)s, options => %(o)s{args})",
                           {"q": question, "o": None if options is None else json.dumps(options),
                            **kwargs}).fetchone()
    return result


def test_hyde_searches_with_the_embedding_of_a_hypothetical_answer(db, echo_llm):
    db.execute("SELECT rag.create_embedder('remote', 'openai', 'all-MiniLM-L6-v2', 384, %s)",
               (echo_llm.url,))
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO notes VALUES (1, %s), (2, %s)", (AUTOVACUUM, VACUUM))
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body', embedder => 'remote',"
               " mode => 'sync')")
    db.execute("UPDATE notes SET body = body || ' '")  # sync mode embeds in this statement
    echo_llm.reset()
    question = "How often does autovacuum run?"
    result = ask(db, question, {"hyde": True}, pipeline="notes")
    chats = echo_llm.chat_requests()
    assert len(chats) == 2  # the hypothetical answer, then the answer
    first = chats[0]["body"]["messages"]
    assert first[0] == {"role": "system", "content": HYDE_SYSTEM}
    assert first[1] == {"role": "user", "content": question}
    assert result["rewrites"] == {"llm_calls": 1, "hyde": f"You said: {question}"}
    # the vector search embedded the hypothetical answer, not the question
    assert echo_llm.embedded_inputs() == [f"You said: {question}"]
    # both calls are paid for: the answer's usage counts the rewrite's tokens too
    rewrite_tokens = len(HYDE_SYSTEM.split()) + len(question.split())
    assert result["usage"]["prompt_tokens"] > rewrite_tokens
    assert "rewrite" in result["timings_ms"]
    logged = db.execute("SELECT prompt_tokens FROM rag.answer_log WHERE id = %s",
                        (result["answer_id"],)).fetchone()[0]
    assert logged == result["usage"]["prompt_tokens"]


def test_multi_step_retrieves_for_each_part_and_answers_from_the_union(db, echo_llm):
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    add_document(db, "vacuum.md", VACUUM, "VACUUM")
    # The echo server sends the question back: two lines are two parts.
    question = "How often does autovacuum run?\nWhat does VACUUM reclaim?"
    plain = ask(db, question, k=1, model="echo")
    assert len(plain["retrieved"]) == 1 and "rewrites" not in plain
    echo_llm.reset()
    result = ask(db, question, {"multi_step": True}, k=1, model="echo")
    assert result["rewrites"] == {"llm_calls": 1, "parts": [
        "You said: How often does autovacuum run?", "What does VACUUM reclaim?"]}
    chats = echo_llm.chat_requests()
    assert chats[0]["body"]["messages"][0]["content"] == DECOMPOSE_SYSTEM
    assert len(chats) == 2
    # one chunk per search (k = 1), three searches: both documents (one chunk each) found
    assert len(result["retrieved"]) == 2


def test_rewrites_are_off_by_default_and_cost_no_call(db, echo_llm):
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    echo_llm.reset()
    result = ask(db, "How often does autovacuum run?")
    assert len(echo_llm.chat_requests()) == 1 and "rewrites" not in result


def test_a_failing_rewrite_falls_back_to_the_question(db, echo_llm):
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s,"
               " options => '{\"max_retries\": 0}')", (echo_llm.url,))
    echo_llm.fail_next({"status": 500})
    result = ask(db, "How often does autovacuum run?", {"hyde": True})
    assert "searched as is" in result["note"] and "HTTP 500" in result["note"]
    assert result["retrieved"] and result["mode"] in ("generated", "extractive")
    echo_llm.fail_next({"status": 500})
    with pytest.raises(psycopg.errors.ExternalRoutineException, match="HTTP 500"):
        ask(db, "How often does autovacuum run?", {"hyde": True, "on_llm_error": "error"})


@pytest.mark.parametrize(("options", "message"), [
    ({"hyde": "yes"}, "option hyde must be true or false, got 'yes'"),
    ({"multi_step": 1}, "option multi_step must be true or false, got 1"),
])
def test_rewrite_options_are_validated(db, options, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        ask(db, "How often does autovacuum run?", options)


def test_rewrites_need_an_llm(db):
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match="options hyde and multi_step need an LLM"):
        ask(db, "How often does autovacuum run?", {"multi_step": True})
