"""ChatClient against a real OpenAI-compatible server on loopback (tests/openai_server.py),
with failures injected by the server, not by patching the client."""

import time

import pytest
from fix_openai import free_port

from pgask.llm import ChatClient, LLMError, LLMSpec

FAST_RETRIES = {"retry_base_seconds": 0.05, "retry_max_seconds": 0.2}
KEY = "sk-test-secret-0123456789abcdef"
ASK = [{"role": "system", "content": "Be brief."},
       {"role": "user", "content": "how big is the moon"}]


def client(url: str, api_key: str | None = None, provider: str = "openai",
           **options) -> ChatClient:
    return ChatClient(LLMSpec("gpt", provider, "echo-model", url, api_key,
                              {**FAST_RETRIES, **options}))


def test_answer_with_usage_and_the_settings_sent(chat_server):
    result = client(chat_server.url, max_tokens=50, temperature=0.3).complete(ASK)

    assert result.text == "You said: how big is the moon"
    assert (result.model, result.finish_reason, result.attempts) == ("echo-model", "stop", 1)
    assert (result.prompt_tokens, result.completion_tokens) == (7, 7)
    assert result.elapsed_ms > 0
    (request,) = chat_server.chat_requests()
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["messages"] == ASK
    assert (request["body"]["max_tokens"], request["body"]["temperature"]) == (50, 0.3)


def test_defaults_are_deterministic_and_bounded(chat_server):
    client(chat_server.url).complete(ASK)

    (request,) = chat_server.chat_requests()
    assert (request["body"]["max_tokens"], request["body"]["temperature"]) == (512, 0)


def test_an_answer_cut_by_max_tokens_says_so(chat_server):
    result = client(chat_server.url, max_tokens=3).complete(ASK)

    assert (result.text, result.finish_reason) == ("You said: how", "length")


def test_a_server_error_is_retried(chat_server):
    chat_server.fail_next({"status": 500})

    result = client(chat_server.url).complete(ASK)

    assert result.text.startswith("You said:")
    assert result.attempts == 2
    assert len(chat_server.chat_requests()) == 2


def test_retry_after_of_a_429_is_honoured(chat_server):
    chat_server.fail_next({"status": 429, "retry_after": 1})
    started = time.monotonic()

    result = client(chat_server.url, retry_max_seconds=5).complete(ASK)

    assert result.attempts == 2
    assert time.monotonic() - started >= 1.0


def test_retry_after_is_capped_by_retry_max_seconds(chat_server):
    chat_server.fail_next({"status": 429, "retry_after": 60})
    started = time.monotonic()

    result = client(chat_server.url, retry_max_seconds=0.2).complete(ASK)

    assert result.attempts == 2
    assert time.monotonic() - started < 5


def test_a_persistent_server_error_gives_up_with_a_clear_retryable_error(chat_server):
    chat_server.fail_next({"status": 500, "times": 10, "message": "model crashed"})

    with pytest.raises(LLMError) as caught:
        client(chat_server.url, max_retries=2).complete(ASK)

    error = caught.value
    assert (error.retryable, error.status) == (True, 500)
    assert len(chat_server.chat_requests()) == 3
    message = str(error)
    assert "LLM 'gpt'" in message and "HTTP 500" in message and chat_server.url in message
    assert "model crashed" in message
    assert "gave up after 3 attempts" in message and "options.max_retries" in message


def test_a_refused_key_is_not_retried_and_never_shown(chat_server):
    chat_server.fail_next({"status": 401, "times": 5,
                           "message": f"Incorrect API key provided: {KEY}"})

    with pytest.raises(LLMError) as caught:
        client(chat_server.url, api_key=KEY).complete(ASK)

    error = caught.value
    assert (error.retryable, error.status) == (False, 401)
    assert len(chat_server.chat_requests()) == 1
    assert KEY not in str(error) and "sk-test" not in str(error)
    assert "api_key_env" in str(error)


def test_a_bad_request_is_not_retried(chat_server):
    chat_server.fail_next({"status": 400, "times": 5, "message": "context length exceeded"})

    with pytest.raises(LLMError) as caught:
        client(chat_server.url).complete(ASK)

    assert (caught.value.retryable, caught.value.status) == (False, 400)
    assert "context length exceeded" in str(caught.value)
    assert len(chat_server.chat_requests()) == 1


def test_a_slow_answer_times_out_naming_the_setting(chat_server):
    chat_server.fail_next({"delay": 3, "times": 5})
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        client(chat_server.url, timeout_seconds=0.5, max_retries=0).complete(ASK)

    assert time.monotonic() - started < 2.5
    assert caught.value.retryable and caught.value.status is None
    assert "within 0.5 s" in str(caught.value) and "options.timeout_seconds" in str(caught.value)


def test_an_unreachable_server_names_base_url_and_how_to_change_it():
    url = f"http://127.0.0.1:{free_port()}/v1"

    with pytest.raises(LLMError) as caught:
        client(url, max_retries=1).complete(ASK)

    message = str(caught.value)
    assert caught.value.retryable
    assert f"could not reach {url} (connection refused)" in message
    assert "base_url" in message and "rag.create_llm" in message


def test_azure_puts_the_deployment_and_api_version_in_the_url(chat_server):
    base = chat_server.url.removesuffix("/v1")

    result = client(base, provider="azure", api_version="2024-10-21").complete(ASK)

    assert result.text == "You said: how big is the moon"
    (request,) = chat_server.chat_requests()
    assert request["path"] == "/openai/deployments/echo-model/chat/completions" \
                              "?api-version=2024-10-21"


@pytest.mark.parametrize(("spec_args", "expected"), [
    (("gpt", "anthropic", "m", "http://x/v1"), "provider must be one of openai, azure"),
    (("gpt", "azure", "m", "http://x"), "needs options.api_version"),
    (("gpt", "openai", "m", "http://x/v1", None, {"timeout": 5}),
     "unknown option(s) timeout; valid options: timeout_seconds"),
    (("gpt", "openai", "m", "http://x/v1", None, {"max_tokens": "many"}),
     "options.max_tokens must be a number"),
    (("gpt", "openai", "m", "http://x/v1", None, {"temperature": 5}),
     "options.temperature must be between 0 and 2"),
])
def test_a_bad_spec_is_refused_at_once(spec_args, expected):
    with pytest.raises(ValueError, match="LLM 'gpt'") as caught:
        ChatClient(LLMSpec(*spec_args))
    assert expected in str(caught.value)
