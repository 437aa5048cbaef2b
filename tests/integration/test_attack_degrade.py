"""Attacks on "degrade, don't fail" (issue 33), variants its own tests do not cover.

The promise: an embedder outage never turns a hybrid search or a default answer into an
error, never makes a query wait more than about the budget, recovery is automatic, and what
is reported is right. Every provider here is the real loopback server (tests/openai_server.py),
told to fail in ways test_degraded_search.py does not: an answer dripped a byte at a time, a
slow redirect loop, a 200 whose vectors are NaN, infinite or of the wrong shape, a 400 for
some inputs only, a configuration fixed while the breaker is open. Time bounds are generous
(several times the budget) and only where the provider would otherwise make a query wait
far longer.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from test_degraded_search import (
    QUERY,
    QUESTION,
    answer,
    build,
    notices,
    search,
    set_settings,
    status,
)

DIM = 384


def keyword_only(seen) -> list[str]:
    return [n.message_primary for n in seen if "searched by keyword only" in n.message_primary]


def is_hybrid(rows) -> bool:
    return bool(rows) and rows[0][2] is not None


# -- a total deadline, not a per-read one ------------------------------------------------------


SLOW = {
    # One byte every 0.2 s, status line and headers included (~110 bytes, ~22 s): every read
    # gets a byte long before the 0.3 s per-request timeout.
    "dripped answer": lambda url: {"drip": 0.2, "times": 1000},
    # A redirect to itself after 0.25 s, twenty times over (httpx follows redirects): each
    # hop answers within the per-request timeout.
    "slow redirect loop": lambda url: {"delay": 0.25, "redirect": url + "/embeddings",
                                       "times": 1000},
}


@pytest.mark.parametrize("kind", list(SLOW))
def test_a_provider_that_answers_slowly_in_pieces_costs_a_search_about_the_budget(
        db, embedding_server, kind):
    build(db, embedding_server.url)  # query timeout 300 ms, budget 1500 ms
    embedding_server.fail_next(SLOW[kind](embedding_server.url))
    started = time.monotonic()
    with notices(db) as seen:
        rows = search(db)
    elapsed = time.monotonic() - started
    assert rows == search(db, mode="keyword") and len(keyword_only(seen)) == 1
    assert elapsed < 8, f"a hybrid search waited {elapsed:.1f} s for a {kind}"


def test_a_dripping_provider_cannot_hold_a_worker_past_its_timeout(db, embedding_server):
    db.execute("SELECT rag.create_embedder('slowsrv', 'openai', 'all-MiniLM-L6-v2-int8', 384,"
               " %s, options => '{\"timeout_seconds\": 1}')", (embedding_server.url,))
    db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body', embedder => 'slowsrv')")
    db.execute("INSERT INTO notes VALUES (1, 'a note about disks')")
    embedding_server.fail_next({"drip": 0.2, "times": 1000})
    started = time.monotonic()
    db.execute("CALL rag.process_queue('notes', max_seconds => 1)")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the worker waited {elapsed:.1f} s on a 1 s timeout_seconds"
    embedding_server.fail_next()
    last_error = db.execute("SELECT last_error FROM rag.pipeline_status"
                            " WHERE pipeline = 'notes'").fetchone()[0]
    assert "within 1 s" in (last_error or ""), last_error


def test_a_cancel_during_a_dripped_query_embedding_acts_and_logs_nothing(
        db, db_url, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_embed_timeout_ms=1000, query_embed_budget_ms=2000)
    embedding_server.fail_next({"drip": 0.2, "times": 1000})
    pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]

    def cancel() -> None:
        time.sleep(0.7)
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("SELECT pg_cancel_backend(%s)", (pid,))

    canceller = threading.Thread(target=cancel)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        answer(db, question="what to do when disk of db1 is full")
    elapsed = time.monotonic() - started
    canceller.join()
    assert elapsed < 8, f"a cancel took {elapsed:.1f} s to act"
    assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone()[0] == 0


# -- a 200 that is not a usable embedding ------------------------------------------------------


def reply(embedding) -> str:
    return json.dumps({"object": "list", "model": "m",
                       "data": [{"object": "embedding", "index": 0, "embedding": embedding}]})


BAD_REPLIES = {
    "NaN": '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding":'
           " [NaN" + ", 0.1" * (DIM - 1) + "]}]}",
    "Infinity": '{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding":'
                " [Infinity" + ", 0.1" * (DIM - 1) + "]}]}",
    "beyond float32": reply([1e39] + [0.1] * (DIM - 1)),
    "all zeros": reply([0.0] * DIM),
    "a number, not a list": reply(0.5),
    "no embedding": json.dumps({"object": "list", "data": [{"object": "embedding",
                                                            "index": 0}]}),
    "embedding null": reply(None),
    "nested list": reply([[0.1] * DIM]),
    "empty data": json.dumps({"object": "list", "data": []}),
    "two vectors for one text": json.dumps({"object": "list", "data": [
        {"object": "embedding", "index": 0, "embedding": [0.1] * DIM},
        {"object": "embedding", "index": 1, "embedding": [0.1] * DIM}]}),
}


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
def test_a_200_without_a_usable_vector_degrades_and_is_not_remembered(
        db, embedding_server, kind):
    build(db, embedding_server.url)
    embedding_server.fail_next({"body": BAD_REPLIES[kind]})
    with notices(db) as seen:
        rows = search(db)
    assert rows == search(db, mode="keyword") and len(keyword_only(seen)) == 1, seen
    assert "embedder qsrv" in keyword_only(seen)[0]
    # The provider answers again: the same query is hybrid, nothing bad was cached.
    with notices(db) as seen:
        assert is_hybrid(search(db))
    assert not keyword_only(seen)
    result = answer(db)
    assert result["degraded"] is None and result["citations"]


# -- the breaker counts outages, not bad inputs, and follows the configuration ----------------


def test_inputs_the_provider_refuses_do_not_open_the_breaker_for_everyone(
        db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=3, query_breaker_cooldown_seconds=60)
    embedding_server.reset()
    # The provider refuses some inputs (too long, a forbidden word): 400, as OpenAI does.
    embedding_server.fail_next({"status": 400, "match": "poison", "times": 1000,
                                "message": "This model's maximum context length is 8192"})
    for n in range(4):
        with notices(db) as seen:
            assert search(db, query=f"poison {n} disk") == search(
                db, query=f"poison {n} disk", mode="keyword")
        assert "HTTP 400" in keyword_only(seen)[0]
    # The provider is up: another user's question is searched as asked.
    with notices(db) as seen:
        rows = search(db)
    assert not keyword_only(seen), keyword_only(seen)
    assert is_hybrid(rows)


def test_fixing_the_embedders_configuration_is_used_at_once_despite_an_open_breaker(
        db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=1, query_breaker_cooldown_seconds=300,
                 query_embed_timeout_ms=5000, query_embed_budget_ms=5000)
    # The operator set a timeout the provider cannot meet ...
    db.execute("UPDATE rag.embedders SET options = '{\"timeout_seconds\": 0.1}'"
               " WHERE name = 'qsrv'")
    embedding_server.fail_next({"delay": 0.5, "times": 2})
    with notices(db) as seen:
        search(db)
    assert "timeout_seconds" in keyword_only(seen)[0]
    # ... and fixes it: the next search uses the new configuration, not the old breaker.
    db.execute("UPDATE rag.embedders SET options = '{\"timeout_seconds\": 5}' WHERE name = 'qsrv'")
    with notices(db) as seen:
        rows = search(db)
    assert not keyword_only(seen), keyword_only(seen)
    assert is_hybrid(rows)


def test_fifty_questions_in_one_statement_during_a_hang_ask_the_provider_a_few_times(
        db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=3, query_breaker_cooldown_seconds=60)
    embedding_server.reset()
    embedding_server.fail_next({"delay": 5, "times": 1000})
    started = time.monotonic()
    with notices(db) as seen:
        rows = db.execute(
            "SELECT q.n, s.chunk_id, s.vector_rank FROM generate_series(1, 50) AS q (n),"
            " LATERAL rag.search('disk of db1 question ' || q.n, 1, pipeline => 'tickets') AS s"
        ).fetchall()
    elapsed = time.monotonic() - started
    assert len(rows) == 50 and all(r[2] is None for r in rows)
    assert len(keyword_only(seen)) == 50
    assert embedding_server.requests() <= 4
    assert elapsed < 20, elapsed


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ignore", "DEGRADE", None, 1, ["degrade"]])
def test_a_bad_on_embedder_error_is_one_clean_error_wherever_it_is_given(db, embedding_server,
                                                                        value):
    build(db, embedding_server.url)
    bad = json.dumps({"on_embedder_error": value})
    calls = {
        "search": lambda: db.execute("SELECT * FROM rag.search('disk', pipeline => 'tickets',"
                                     " options => %s)", (bad,)),
        "answer": lambda: db.execute("SELECT rag.answer('disk?', pipeline => 'tickets',"
                                     " options => %s)",
                                     (json.dumps({"search": {"on_embedder_error": value}}),)),
        "alter_pipeline": lambda: db.execute(
            "SELECT rag.alter_pipeline('tickets', search_options => %s)", (bad,)),
    }
    for name, call in calls.items():
        with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
            call()
        message = caught.value.diag.message_primary
        assert "on_embedder_error" in message and "degrade" in message, (name, message)


# -- answers with an LLM, rewrites, reranking and sync writes during an outage -----------------


EMBEDDINGS_DOWN = {"status": 503, "endpoint": "embeddings", "times": 10000}  # chats answered


@pytest.mark.parametrize("options", [None, {"hyde": True}, {"multi_step": True}],
                         ids=["plain", "hyde", "multi_step"])
def test_a_generated_answer_during_an_outage_is_degraded_logged_and_cited(
        db, embedding_server, options):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s)", (embedding_server.url,))
    embedding_server.fail_next(EMBEDDINGS_DOWN)
    result = answer(db, model="echo", options=options)
    assert result["degraded"] and "HTTP 503" in result["degraded"], result
    assert result["note"].startswith("This answer comes from keyword search (BM25) only")
    assert result["retrieved"], result
    assert result["mode"] in ("generated", "extractive", "no_answer"), result
    logged = db.execute("SELECT degraded, retrieved_chunk_ids FROM rag.answer_log"
                        " WHERE id = %s", (result["answer_id"],)).fetchone()
    assert logged[0] == result["degraded"]
    assert logged[1] == [r["chunk_id"] for r in result["retrieved"]]
    for citation in result["citations"]:
        assert citation["chunk_id"] in logged[1]


def test_reranking_during_an_outage_reranks_the_keyword_candidates(db, embedding_server,
                                                                   rerank_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_reranker('rr', 'tei', NULL, %s)", (rerank_server.url,))
    embedding_server.fail_next(EMBEDDINGS_DOWN)
    with notices(db) as seen:
        rows = db.execute("SELECT chunk_id, rerank_score, vector_rank FROM rag.search(%s, 3,"
                          " pipeline => 'tickets', options => '{\"rerank\": \"rr\"}')",
                          (QUERY,)).fetchall()
    assert rows and all(r[1] is not None and r[2] is None for r in rows)
    assert len(keyword_only(seen)) == 1
    # Both down: keyword order, both said.
    rerank_server.fail_with(503)
    result = answer(db, options={"search": {"rerank": "rr"}})
    assert result["degraded"] and "reranker failed" in result["note"]
    assert result["note"].startswith("This answer comes from keyword search (BM25) only")


def test_status_after_recovery_reports_the_past_not_a_current_outage(db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_cooldown_seconds=1)
    embedding_server.fail_next(EMBEDDINGS_DOWN)
    assert answer(db)["degraded"]
    embedding_server.fail_next()
    time.sleep(1.2)
    again = answer(db, question=QUESTION + " again")
    assert again["degraded"] is None
    row = status(db)
    assert row["degraded_answers_1h"] == 1


def test_the_worker_keeps_its_own_timeout_while_queries_are_short(db, embedding_server):
    build(db, embedding_server.url)  # query timeout 300 ms
    db.execute("INSERT INTO tickets VALUES (5, 'a fifth ticket about vacuum')")
    embedding_server.fail_next({"delay": 0.8, "times": 1})
    db.execute("CALL rag.process_queue('tickets')")
    assert db.execute("SELECT count(*) FROM rag.tickets_chunks").fetchone()[0] == 5
    assert db.execute("SELECT count(*) FROM rag.dead_letters").fetchone()[0] == 0


# -- the reranker: a total deadline, and a breaker --------------------------------------------


def test_a_dripping_reranker_costs_a_search_about_its_timeout(db, embedding_server,
                                                              rerank_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_reranker('rr', 'tei', NULL, %s,"
               " options => '{\"timeout_seconds\": 1}')", (rerank_server.url,))
    embedding_server.fail_next(EMBEDDINGS_DOWN)
    rerank_server.drip(0.2)  # ~45 bytes: ~9 s, each within the 1 s timeout
    started = time.monotonic()
    with notices(db) as seen:
        rows = search(db, options={"rerank": "rr"})
    elapsed = time.monotonic() - started
    rerank_server.drip(None)
    assert rows == search(db, mode="keyword")
    assert any("not reranked" in n.message_primary for n in seen)
    assert elapsed < 6, f"a search waited {elapsed:.1f} s on a reranker with a 1 s timeout"


def test_a_hung_reranker_is_asked_a_few_times_not_once_per_question(db, embedding_server,
                                                                    rerank_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=2, query_breaker_cooldown_seconds=60)
    db.execute("SELECT rag.create_reranker('rr', 'tei', NULL, %s,"
               " options => '{\"timeout_seconds\": 0.3}')", (rerank_server.url,))
    rerank_server.drip(1)  # nothing within 0.3 s
    with notices(db) as seen:
        rows = db.execute(
            "SELECT q.n, s.chunk_id, s.rerank_score FROM generate_series(1, 12) AS q (n),"
            " LATERAL rag.search('disk of db1 ' || q.n, 1, pipeline => 'tickets',"
            " options => '{\"rerank\": \"rr\"}') AS s").fetchall()
    calls = len(rerank_server.calls())
    rerank_server.drip(None)
    assert len(rows) == 12 and all(r[2] is None for r in rows)
    assert sum("not reranked" in n.message_primary for n in seen) == 12
    assert calls <= 3, f"a hung reranker was asked {calls} times in one statement"


def test_a_reranker_that_scores_none_of_the_passages_does_not_fail_the_search(
        db, embedding_server, rerank_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_reranker('rr', 'tei', NULL, %s)", (rerank_server.url,))
    rerank_server.drip(0.001)  # a 200 with an empty list, quickly
    with notices(db) as seen:
        rows = search(db, options={"rerank": "rr"})
    rerank_server.drip(None)
    assert [r[0] for r in rows] == [r[0] for r in search(db)]
    assert all(r[1] is not None and r[1] == r[1] for r in rows)  # no NaN, no infinity
    assert len(rows) == 3, seen


# -- one configuration's breaker is its own; the LLM down too ----------------------------------


def test_one_broken_embedder_never_degrades_another_at_the_same_provider(
        db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_breaker_failures=2, query_breaker_cooldown_seconds=60)
    # Another role's embedder at the same server, misconfigured (a path the server lacks).
    db.execute("CREATE ROLE mallory LOGIN")
    db.execute("GRANT pgask_admin TO mallory")
    db.execute("GRANT CREATE ON SCHEMA public TO mallory")
    db.execute("SET ROLE mallory")
    try:
        db.execute("SELECT rag.create_embedder('broken', 'openai', 'all-MiniLM-L6-v2-int8',"
                   " 384, %s)", (embedding_server.url + "/nope",))
        db.execute("CREATE TABLE mallory_notes (id integer PRIMARY KEY, body text NOT NULL)")
        db.execute("INSERT INTO mallory_notes VALUES (1, 'the disk of db1 is full again')")
        db.execute("SELECT rag.create_pipeline('mnotes', 'mallory_notes', 'body',"
                   " embedder => 'broken')")
        for n in range(3):
            rows = db.execute("SELECT vector_rank FROM rag.search(%s, 3,"
                              " pipeline => 'mnotes')", (f"disk {n}",)).fetchall()
            assert all(r[0] is None for r in rows)
    finally:
        db.execute("RESET ROLE")
    with notices(db) as seen:
        assert is_hybrid(search(db))
    assert not keyword_only(seen)


def test_an_answer_with_both_the_embedder_and_the_llm_down_is_still_an_answer(
        db, embedding_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s)", (embedding_server.url,))
    embedding_server.fail_next({"status": 503, "times": 10000})  # embeddings and chat
    started = time.monotonic()
    result = answer(db, model=None)
    elapsed = time.monotonic() - started
    assert result["degraded"] and result["answer"], result
    assert result["citations"], result
    assert elapsed < 30, elapsed


def test_a_dripping_llm_costs_an_answer_about_its_timeout(db, embedding_server):
    build(db, embedding_server.url)
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s,"
               " options => '{\"timeout_seconds\": 1, \"max_retries\": 0}')",
               (embedding_server.url,))
    embedding_server.fail_next({"drip": 0.2, "times": 1000})  # embeddings and chat
    started = time.monotonic()
    result = answer(db, model="echo")
    elapsed = time.monotonic() - started
    assert result["degraded"] and result["answer"], result
    assert "within 1 s" in (result["llm_error"] or ""), result
    assert elapsed < 10, f"an answer waited {elapsed:.1f} s on an LLM with a 1 s timeout"


def test_a_sync_write_during_an_outage_succeeds(db, embedding_server):
    build(db, embedding_server.url)
    db.execute("CREATE TABLE synced (id integer PRIMARY KEY, body text NOT NULL)")
    db.execute("SELECT rag.create_pipeline('synced', 'synced', 'body', embedder => 'qsrv',"
               " mode => 'sync')")
    embedding_server.fail_next({"status": 503, "times": 10000})
    with notices(db) as seen:
        db.execute("INSERT INTO synced VALUES (1, 'written while the embedder is down')")
    assert db.execute("SELECT count(*) FROM synced").fetchone()[0] == 1
    assert not [n for n in seen if "Traceback" in n.message_primary]
    embedding_server.fail_next()
    db.execute("CALL rag.process_queue('synced')")
    assert db.execute("SELECT count(*) FROM rag.synced_chunks").fetchone()[0] == 1


def test_a_statement_timeout_during_a_query_embedding_cancels_not_degrades(
        db, embedding_server):
    build(db, embedding_server.url)
    set_settings(db, query_embed_timeout_ms=1000, query_embed_budget_ms=2000)
    embedding_server.fail_next({"delay": 5, "times": 1000})
    db.execute("SET statement_timeout = '300ms'")
    try:
        for call in (lambda: search(db), lambda: answer(db)):
            with pytest.raises(psycopg.errors.QueryCanceled):
                call()
    finally:
        db.execute("RESET statement_timeout")
    assert db.execute("SELECT count(*) FROM rag.answer_log").fetchone()[0] == 0
