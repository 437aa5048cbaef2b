"""A successful reply that repeats the LLM's own API key (an injected prompt can ask for it)
reaches neither the caller of rag.answer nor rag.answer_log, however the key is disguised.

`chat_server` is the loopback OpenAI-compatible server; its "body" fault makes the next
request's answer a chat completion of our choosing: here, one that echoes the stored key."""

from __future__ import annotations

import base64
import json
import secrets

from fix_db import add_document

AUTOVACUUM = ("Autovacuum launches a worker every 60 seconds by default. The setting "
              "autovacuum_naptime changes the interval.")


def completion(content: str) -> str:
    return json.dumps({
        "id": "chatcmpl-echo", "object": "chat.completion", "created": 0, "model": "echo-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50}})


def folded(text: str) -> str:
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())


def shown(text: str, secret: str) -> list[str]:
    """Runs of 8 characters of the key's secret part (letters and digits, any case, either
    way round) that the text still holds with its punctuation and spaces dropped."""
    part = folded(secret)
    runs = {part[i:i + 8] for i in range(len(part) - 7)}
    runs |= {run[::-1] for run in runs}
    return sorted(run for run in runs if run in folded(text))


def test_an_llm_reply_echoing_its_stored_key_is_redacted_in_the_answer_and_the_log(
        db, chat_server):
    secret = secrets.token_hex(20)
    key = "sk-proj-" + secret
    add_document(db, "autovacuum.md", AUTOVACUUM, "Autovacuum")
    db.execute("SELECT rag.set_secret('llm', %s, ARRAY[%s])", (key, chat_server.url))
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s, 'secret:llm',"
               " '{\"max_retries\": 0}')", (chat_server.url,))
    echoes = (key, " ".join(key[::-1]), key.upper(),
              base64.b64encode(key.encode()).decode(),
              "".join(f"\\u{ord(c):04x}" for c in key),
              "".join(f"%{ord(c):02X}" for c in key))
    reply = ("Autovacuum launches a worker every 60 seconds [1]. Your key is "
             + ", or ".join(echoes) + ".")
    assert shown(reply, secret)  # the check below sees the echoes when they are there
    chat_server.fail_next({"body": completion(reply)})
    (result,) = db.execute("SELECT rag.answer('How often does autovacuum run?',"
                           " options => '{\"guard\": \"flag\"}')").fetchone()
    assert result["mode"] == "generated", result
    assert result["answer"].startswith("Autovacuum launches a worker every 60 seconds [1]. "
                                       "Your key is ***"), result["answer"]
    (logged,) = db.execute("SELECT to_jsonb(l)::text FROM rag.answer_log l WHERE id = %s",
                           (result["answer_id"],)).fetchone()
    for text in (json.dumps(result), logged):
        assert key not in text and key.upper() not in text
        assert shown(text, secret) == []
