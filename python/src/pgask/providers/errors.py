"""The error types of provider calls: one base, one subclass per kind of provider.

Every one says whether trying again later can help (``retryable``: timeouts, 429, 5xx,
connection refused), how long the provider asked to wait (``retry_after``, seconds) and the
HTTP status where there was one. Messages name the provider and the setting to change, never
the API key (see redaction).
"""

from __future__ import annotations


class ProviderError(Exception):
    """A call to a provider failed."""

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class EmbedderError(ProviderError):
    """An embedding call failed; the queue retries it unless ``retryable`` is false."""

    def __init__(self, message: str, *, retryable: bool = True,
                 retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after, status=status)


class LLMError(ProviderError):
    """A chat completion failed (after the chat client's own retries)."""

    def __init__(self, message: str, retryable: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after, status=status)


class RerankError(ProviderError):
    """A reranker call failed; rag.search then keeps the first-stage order."""


class KeyAccessError(EmbedderError, LLMError, RerankError):
    """The calling role may not use API keys stored with rag.set_secret (it is not a member of
    pgask_reader): SQLSTATE 42501 where it reaches SQL. A subclass of every kind's error, so
    each caller handles it as its own (an LLM's falls back, a reranker's keeps the order)."""

    PREFIX = "privilege: "  # how sqlbridge.embed_with tells rag.embed to raise 42501

    def __init__(self, message: str) -> None:
        ProviderError.__init__(self, message, retryable=False)
