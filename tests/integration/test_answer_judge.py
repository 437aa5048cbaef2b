"""The LLM judge (guard 'judge', issue 32) against the loopback OpenAI-compatible server: the
request it sends, how its reply is parsed, and what a malformed reply, a refusal and a timeout
do to the answer. The answer comes from the prompt "REPLY: <text>"; the judge's reply from a
scheduled {"reply": ...} for the request that holds the claims."""

from __future__ import annotations

import json

import psycopg
import pytest
from test_answer_llm import AUTOVACUUM, ask, replying

from fix_db import add_document
from pgask.answering import judge

ANSWER = ("Autovacuum launches a worker every 60 seconds [1]. "
          "The setting autovacuum_naptime changes the interval [1].")
JUDGE_REQUEST = "Claims made in the answer"


@pytest.fixture
def llm(db, chat_server):
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s)", (chat_server.url,))
    return chat_server


def judged(db, server, verdict: str | None, **options):
    """rag.answer of ANSWER with guard 'judge', the judge replying `verdict` (None: no fault
    scheduled)."""
    if verdict is not None:
        server.fail_next({"match": JUDGE_REQUEST, "reply": verdict})
    return ask(db, "How often does autovacuum launch a worker?",
               {**replying(ANSWER), "guard": "judge", **options})


def test_one_request_judges_every_claim_and_its_cost_is_reported(db, llm):
    result = judged(db, llm, "1: SUPPORTED\n2: SUPPORTED")
    assert result["mode"] == "generated" and result["grounded"] is True
    assert [c["verdict"] for c in result["claims"]] == ["supported", "supported"]
    answer_request, judge_request = [c["body"] for c in llm.chat_requests()]
    assert judge_request["max_tokens"] == judge.TOKENS_PER_CLAIM * 2 + judge.TOKENS_MARGIN
    system, user = judge_request["messages"]
    assert system == {"role": "system", "content": judge.SYSTEM}
    assert f"[1] {AUTOVACUUM}" in user["content"]
    assert ("1. (passage [1]) Autovacuum launches a worker every 60 seconds.\n"
            "2. (passage [1]) The setting autovacuum_naptime changes the interval."
            in user["content"])
    usage = result["usage"]
    assert usage["judge"]["calls"] == 1 and usage["judge"]["llm"] == "echo"
    assert usage["judge"]["prompt_tokens"] > 0
    # The totals hold both calls; the judge's time is its own entry, not the answer's.
    assert usage["prompt_tokens"] > usage["judge"]["prompt_tokens"]
    assert result["timings_ms"]["judge"] > 0
    assert set(result["timings_ms"]) >= {"generate", "judge", "total"}
    assert "judge" not in result  # its time is in timings_ms, its cost in usage
    logged = db.execute("SELECT prompt_tokens, timings_ms ? 'judge' FROM rag.answer_log "
                        "WHERE id = %s", (result["answer_id"],)).fetchone()
    assert logged == (usage["prompt_tokens"], True)


def test_a_contradicted_claim_withholds_the_answer_or_is_dropped_or_flagged(db, llm):
    verdict = "1: SUPPORTED\n2: CONTRADICTED"
    withheld = judged(db, llm, verdict)
    assert withheld["mode"] != "generated" and withheld["grounded"] is False
    assert withheld["problems"] == [
        'judge: the claim "The setting autovacuum_naptime changes the interval." is not '
        "supported: the passage it rests on contradicts it"]
    assert "withheld" in withheld["note"]
    (logged,) = db.execute("SELECT problems FROM rag.answer_log WHERE id = %s",
                           (withheld["answer_id"],)).fetchone()
    assert logged == withheld["problems"]

    dropped = judged(db, llm, verdict, judge_unsupported="drop")
    assert dropped["mode"] == "generated"
    assert dropped["answer"] == "Autovacuum launches a worker every 60 seconds [1]."
    assert dropped["generated_answer"] == ANSWER
    assert dropped["note"].startswith("1 claim(s) of the generated answer were dropped")

    flagged = judged(db, llm, verdict, judge_unsupported="flag")
    assert flagged["mode"] == "generated" and flagged["grounded"] is False
    assert [c["verdict"] for c in flagged["claims"]] == ["supported", "contradicted"]


@pytest.mark.parametrize("reply", [
    "Both claims are correct.",  # no verdict lines
    "1: SUPPORTED\n1: NOT STATED\n2: SUPPORTED",  # claim 1 twice, disagreeing
    "1: SUPPORTED, mostly\n2: SUPPORTED",  # a verdict line with more on it
    "I'm sorry, but I can't help with that.",  # a refusal
])
def test_a_reply_that_cannot_be_read_supports_nothing(db, llm, reply):
    result = judged(db, llm, reply)
    assert result["mode"] != "generated" and result["grounded"] is False
    assert any("the judge's reply gave no readable verdict" in p for p in result["problems"])
    assert judge.MALFORMED in [c["verdict"] for c in result["claims"]]


def test_a_judge_that_times_out_withholds_the_answer_or_fails(db, llm):
    db.execute("SELECT rag.create_llm('slow-judge', 'openai', 'judge-1', %s, options => "
               "'{\"timeout_seconds\": 1, \"max_retries\": 0}')", (llm.url,))
    llm.fail_next({"match": JUDGE_REQUEST, "delay": 3})
    result = ask(db, "How often does autovacuum launch a worker?",
                 {**replying(ANSWER), "guard": "judge", "judge_llm": "slow-judge"})
    assert result["mode"] != "generated" and result["grounded"] is False
    assert result["llm_error"].startswith("the judge failed: LLM 'slow-judge' did not answer "
                                          "within 1 s")
    assert result["usage"]["judge"]["llm"] == "slow-judge"
    assert [c["verdict"] for c in result["claims"]] == [judge.MALFORMED] * 2
    llm.fail_next({"match": JUDGE_REQUEST, "delay": 3})
    with pytest.raises(psycopg.errors.ExternalRoutineException) as excinfo:
        ask(db, "How often does autovacuum launch a worker?",
            {**replying(ANSWER), "guard": "judge", "judge_llm": "slow-judge",
             "on_llm_error": "error"})
    assert excinfo.value.diag.message_primary.startswith(
        "rag.answer: the judge failed: LLM 'slow-judge' did not answer within 1 s")


@pytest.mark.parametrize(("options", "message"), [
    ({"guard": "judge", "judge_llm": "nobody"},
     "rag.answer: option judge_llm names 'nobody', which is not a registered LLM (rag.llms)"),
    ({"guard": "judge", "judge_unsupported": "hide"},
     "rag.answer: options: option judge_unsupported must be one of withhold, drop, flag, got "
     "'hide'"),
    ({"guard": "judges"},
     "rag.answer: options: option guard must be one of replace, flag, judge, got 'judges'"),
])
def test_bad_judge_options_name_the_option(db, llm, options, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as excinfo:
        ask(db, "How often does autovacuum launch a worker?", options)
    assert excinfo.value.diag.message_primary == message


def test_a_pipeline_can_make_judge_its_guard(db, llm):
    db.execute("SELECT rag.alter_pipeline('documents', answer_options => %s)",
               (json.dumps({"guard": "judge"}),))
    llm.fail_next({"match": JUDGE_REQUEST, "reply": "1: NOT STATED\n2: SUPPORTED"})
    result = ask(db, "How often does autovacuum launch a worker?", replying(ANSWER))
    assert result["grounded"] is False and result["mode"] != "generated"
    assert [c["verdict"] for c in result["claims"]] == ["not stated", "supported"]
