"""Reaching providers (embedding APIs, LLMs, rerankers) in one place: the error types
(``errors``), API keys from the server's environment or rag.secrets (``keys``), keeping keys
out of messages (``redaction``), and the one retry policy: exponential backoff with jitter and
the provider's Retry-After (``retry``).

Pure but for ``keys.read_secret``, which is handed PL/Python's ``plpy`` by its caller.
"""

from pgask.providers.errors import EmbedderError, LLMError, ProviderError, RerankError
from pgask.providers.keys import read_secret, resolve_api_key
from pgask.providers.redaction import redact
from pgask.providers.retry import backoff_seconds, retry_after_seconds

__all__ = [
    "EmbedderError",
    "LLMError",
    "ProviderError",
    "RerankError",
    "backoff_seconds",
    "read_secret",
    "redact",
    "resolve_api_key",
    "retry_after_seconds",
]
