"""A client for any OpenAI-compatible /v1/chat/completions endpoint: OpenAI, Azure OpenAI,
Ollama, vLLM, a llama.cpp server or `pgask serve-llm`.

Retries happen here, not in the `openai` package (it runs with max_retries=0): an answer is
awaited by someone, so the waits are short, bounded by options, and every failure ends in one
LLMError whose message names the setting to change. API keys never appear in a message.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields

from pgask.providers import LLMError, backoff_seconds, redact, retry_after_seconds
from pgask.providers.deadline import deadline, with_deadlines

PROVIDERS = ("openai", "azure")
REGISTER_HINT = "rag.llms (rag.create_llm(...))"


@dataclass(frozen=True)
class LLMOptions:
    """The tunable part of a registered LLM (its `options` jsonb)."""

    timeout_seconds: float = 60.0
    max_tokens: int = 512
    temperature: float = 0.0
    max_retries: int = 2
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 10.0
    api_version: str | None = None  # Azure OpenAI only

    @classmethod
    def from_dict(cls, llm_name: str, options: dict | None) -> LLMOptions:
        """Options from jsonb, type-checked; a misspelt key is an error, not a silent default."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options or {}) - set(known))
        if unknown:
            raise ValueError(f"LLM '{llm_name}': unknown option(s) {', '.join(unknown)}; "
                             f"valid options: {', '.join(known)}")
        values = {}
        for key, value in (options or {}).items():
            if value is None:  # a jsonb null: the default
                continue
            # Field types are the annotation strings ("int", "float", "str | None").
            kind = {"int": int, "float": float}.get(known[key].type, str)
            try:
                values[key] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"LLM '{llm_name}': options.{key} must be a number, "
                                 f"got {value!r}") from None
        parsed = cls(**values)
        parsed._check(llm_name)
        return parsed

    def _check(self, llm_name: str) -> None:
        problems = [
            (self.timeout_seconds <= 0, "timeout_seconds must be > 0"),
            (self.max_tokens < 1, "max_tokens must be >= 1"),
            (not 0 <= self.temperature <= 2, "temperature must be between 0 and 2"),
            (self.max_retries < 0, "max_retries must be >= 0"),
            (self.retry_base_seconds < 0, "retry_base_seconds must be >= 0"),
            (self.retry_max_seconds < self.retry_base_seconds,
             "retry_max_seconds must be >= retry_base_seconds"),
        ]
        for failed, rule in problems:
            if failed:
                raise ValueError(f"LLM '{llm_name}': options.{rule}")


@dataclass(frozen=True)
class LLMSpec:
    """A registered LLM. `api_key` is the key itself, already resolved by the caller."""

    name: str
    provider: str
    model: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    elapsed_ms: float
    attempts: int


class ChatClient:
    """Sends chat completions for one LLMSpec. Raises ValueError for a bad spec, at once."""

    def __init__(self, spec: LLMSpec) -> None:
        import openai

        if spec.provider not in PROVIDERS:
            raise ValueError(f"LLM '{spec.name}': provider must be one of "
                             f"{', '.join(PROVIDERS)}, got {spec.provider!r}")
        self.spec = spec
        self.options = LLMOptions.from_dict(spec.name, spec.options)
        # timeout_seconds is a total deadline (pgask.providers.deadline), not per read.
        common = {"api_key": spec.api_key or "not-needed", "timeout": self.options.timeout_seconds,
                  "max_retries": 0,
                  "http_client": with_deadlines(openai.DefaultHttpxClient())}
        if spec.provider == "azure":
            if not self.options.api_version:
                raise ValueError(f"LLM '{spec.name}': provider 'azure' needs "
                                 "options.api_version (for example '2024-10-21')")
            # The model is the deployment name: the client puts it in the URL path.
            self._client = openai.AzureOpenAI(azure_endpoint=spec.base_url,
                                              api_version=self.options.api_version, **common)
        else:
            self._client = openai.OpenAI(base_url=spec.base_url, **common)

    def complete(self, messages: list[dict], max_tokens: int | None = None) -> ChatResult:
        """`max_tokens` lowers options.max_tokens for this call (a judge's short verdicts)."""
        started = time.monotonic()
        attempt = 0
        limit = self.options.max_tokens if max_tokens is None else min(
            max_tokens, self.options.max_tokens)
        while True:
            attempt += 1
            try:
                response = self._request(messages, limit)
            except LLMError as error:
                if not error.retryable or attempt > self.options.max_retries:
                    raise self._final(error, attempt) from None
                time.sleep(self._backoff(attempt, error.retry_after))
                continue
            return self._result(response, attempt, started)

    def _request(self, messages: list[dict], max_tokens: int):
        import openai

        try:
            with deadline(self.options.timeout_seconds):
                return self._client.chat.completions.create(
                    model=self.spec.model, messages=messages,
                    max_tokens=max_tokens, temperature=self.options.temperature)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:  # before APIConnectionError: it is a subclass
            raise self._error(
                f"LLM '{self.spec.name}' did not answer within {self.options.timeout_seconds:g} s "
                f"at {self.spec.base_url}: raise options.timeout_seconds or lower "
                f"options.max_tokens in {REGISTER_HINT}, or use a faster model",
                retryable=True) from None
        except openai.APIConnectionError as exc:
            reason = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc.__cause__ or exc)).lower()
            raise self._error(
                f"LLM '{self.spec.name}' could not reach {self.spec.base_url} ({reason}): "
                f"check base_url in rag.llms (rag.create_llm(..., base_url => ...)) and that "
                "the server is running", retryable=True) from None
        except openai.APIError as exc:  # a 200 that is not a chat completion
            raise self._error(
                f"LLM '{self.spec.name}' got an unexpected reply from {self.spec.base_url} "
                f"({exc}): is base_url an OpenAI-compatible endpoint (usually ending in /v1)?"
            ) from None

    def _status_error(self, exc) -> LLMError:
        status = exc.status_code
        body = str(getattr(exc, "message", exc))[:300]
        where = f"LLM '{self.spec.name}': HTTP {status} from {self.spec.base_url}: {body}"
        if status in (401, 403):
            return self._error(f"{where}; check the API key (api_key_env in {REGISTER_HINT})",
                               status=status)
        if status == 404:
            return self._error(f"{where}; check base_url (usually ending in /v1) and the model "
                               f"name {self.spec.model!r} in {REGISTER_HINT}", status=status)
        if status == 429:
            return self._error(f"{where}; the provider is rate limiting: ask less often or "
                               f"raise options.max_retries in {REGISTER_HINT}", retryable=True,
                               status=status, retry_after=retry_after_seconds(
                                   exc.response.headers if exc.response is not None else None))
        if status >= 500 or status in (408, 409):
            return self._error(f"{where}; the server failed: see its logs, or try again later",
                               retryable=True, status=status)
        # 400, 413, 422: the request itself is refused (often a prompt over the context size).
        return self._error(f"{where}; a prompt too long for the model's context is the usual "
                           "cause: lower the prompt's token budget or options.max_tokens",
                           status=status)

    def _error(self, message: str, retryable: bool = False, status: int | None = None,
               retry_after: float | None = None) -> LLMError:
        return LLMError(redact(message, self.spec.api_key), retryable, status, retry_after)

    def _final(self, error: LLMError, attempts: int) -> LLMError:
        """The error to raise, saying how many attempts were made when there were retries."""
        if attempts == 1:
            return error
        return LLMError(f"{error} (gave up after {attempts} attempts; options.max_retries is "
                        f"{self.options.max_retries})", error.retryable, error.status)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt (pgask.providers.retry), never more than
        retry_max_seconds: someone is waiting for this answer."""
        cap = self.options.retry_max_seconds
        return backoff_seconds(attempt, self.options.retry_base_seconds, cap, retry_after,
                               max_wait=cap)

    def _result(self, response, attempts: int, started: float) -> ChatResult:
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice and choice.message else None
        if not isinstance(text, str):
            raise self._error(f"LLM '{self.spec.name}' returned no text "
                              f"(finish_reason {getattr(choice, 'finish_reason', None)!r})")
        usage = response.usage
        return ChatResult(
            # The model may have been talked into repeating the key it is called with, in
            # any disguise: the answer, and so rag.answer_log, never holds it.
            text=redact(text, self.spec.api_key, shapes=False),
            model=response.model or self.spec.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=choice.finish_reason,
            elapsed_ms=(time.monotonic() - started) * 1000,
            attempts=attempts,
        )

