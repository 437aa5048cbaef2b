"""Tests for pgask.providers: the retry policy, Retry-After, redaction, keys and error types."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pgask.providers import (
    EmbedderError,
    LLMError,
    ProviderError,
    RerankError,
    backoff_seconds,
    redact,
    resolve_api_key,
    retry_after_seconds,
)


@pytest.mark.parametrize(("attempt", "full"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)])
def test_backoff_doubles_up_to_the_cap_and_jitters_in_its_upper_half(attempt, full):
    waits = [backoff_seconds(attempt, base=2.0, cap=10.0) for _ in range(200)]
    assert all(full / 2 <= wait <= full for wait in waits)
    assert len(set(waits)) > 1  # jittered, so clients that failed together spread out


def test_retry_after_is_a_floor_and_max_wait_a_ceiling():
    assert backoff_seconds(1, base=1.0, cap=10.0, retry_after=30.0) == 30.0
    assert backoff_seconds(1, base=1.0, cap=10.0, retry_after=30.0, max_wait=10.0) == 10.0
    assert backoff_seconds(5, base=1.0, cap=60.0, max_wait=3.0) == 3.0


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "-4"}, 0.0),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "soon"}, None),
    ({}, None),
    (None, None),
])
def test_retry_after_header_forms(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = retry_after_seconds({"retry-after": format_datetime(when, usegmt=True)})
    assert 100 <= seconds <= 121


def test_redact_removes_the_key_and_anything_shaped_like_one():
    message = "bad key sk-live-abcdef123 (Bearer tok_9876543210), yours: s3cretvalue"
    assert redact(message, "s3cretvalue") == "bad key sk-*** (Bearer ***), yours: ***"


@dataclass
class Row:
    name: str
    api_key_env: str | None


def test_a_key_from_the_environment_or_from_rag_secrets(monkeypatch):
    monkeypatch.setenv("PGASK_TEST_PROVIDER_KEY", "from-env")
    secrets = {"openai": "from-secrets"}
    assert resolve_api_key(Row("e", "PGASK_TEST_PROVIDER_KEY"), secrets.get) == "from-env"
    assert resolve_api_key(Row("e", "secret:openai"), secrets.get) == "from-secrets"
    assert resolve_api_key(Row("e", None), secrets.get) is None


@pytest.mark.parametrize(("what", "error"), [
    ("embedder", EmbedderError), ("LLM", LLMError), ("reranker", RerankError)])
def test_a_missing_key_is_the_asking_providers_error(what, error):
    with pytest.raises(error, match=rf"^{what} x: no API key: rag.secrets entry 'gone' "
                                    r"\(rag.set_secret\) is not set$") as caught:
        resolve_api_key(Row("x", "secret:gone"), {}.get, what=what)
    assert not caught.value.retryable
    assert type(caught.value) is error  # an LLM's key error is no EmbedderError


@pytest.mark.parametrize(("what", "error"), [("LLM", LLMError), ("reranker", RerankError)])
def test_a_secret_the_role_may_not_read_is_the_asking_providers_error(what, error):
    def refused(name):
        raise ProviderError("the role running this may not read API keys stored with "
                            "rag.set_secret (permission denied)")

    with pytest.raises(error, match="may not read API keys") as caught:
        resolve_api_key(Row("x", "secret:k"), refused, what=what)
    assert not isinstance(caught.value, EmbedderError)


def test_embedder_errors_are_retryable_unless_said_otherwise():
    assert EmbedderError("timeout").retryable
    assert not EmbedderError("401", retryable=False).retryable
    assert not LLMError("401").retryable
    assert LLMError("429", True, 429, 2.0).retry_after == 2.0


@dataclass
class Endpoint:
    name: str
    api_key_env: str | None
    base_url: str | None


class _Plpy:
    """The two calls keys.load makes, for a rag.secrets row (value, base_urls)."""

    def __init__(self, value, base_urls):
        self.row = {"value": value, "base_urls": base_urls}

    def prepare(self, query, types):
        return query

    def execute(self, plan, args):
        return [self.row]


@pytest.mark.parametrize(("stored_for", "url", "allowed"), [
    (None, None, True),  # the OpenAI SDK's default endpoint
    (None, "https://api.openai.com/v1", True),
    (None, "https://API.OpenAI.com:443/v1/", True),
    (None, "http://127.0.0.1:8088/v1", False),
    (None, "https://api.openai.com.evil.example/v1", False),
    (["http://127.0.0.1:8088/v1"], "http://127.0.0.1:8088/other", True),
    (["http://127.0.0.1:8088/v1"], "http://127.0.0.1:8089/v1", False),
    (["http://127.0.0.1:8088/v1"], "https://127.0.0.1:8088/v1", False),
    (["https://gw.example"], "https://user@gw.example.attacker.example/v1", False),
    (["https://gw.example"], "https://api.openai.com/v1", False),
])
def test_a_stored_key_goes_only_to_the_servers_it_was_stored_for(stored_for, url, allowed):
    from pgask.providers import keys

    keys.load(_Plpy("sk-stored", stored_for), "k")
    values = {"k": "sk-stored"}
    endpoint = Endpoint("e", "secret:k", url)
    if allowed:
        assert resolve_api_key(endpoint, values.get) == "sk-stored"
    else:
        with pytest.raises(EmbedderError, match="may not be sent to") as caught:
            resolve_api_key(endpoint, values.get)
        assert "sk-stored" not in str(caught.value) and not caught.value.retryable


@pytest.mark.parametrize("variable", ["PGDATA", "HOME", "PGPASSWORD", "PATH", "openai_api_key"])
def test_api_key_env_names_only_a_keys_variable(monkeypatch, variable):
    monkeypatch.setenv(variable, "server-side value")
    with pytest.raises(LLMError, match="api_key_env must name a variable of a key"):
        resolve_api_key(Row("x", variable), {}.get, what="LLM")
