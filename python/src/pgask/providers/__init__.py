"""Reaching providers (embedding APIs, LLMs, rerankers) in one place: the error types
(``errors``), API keys from the server's environment or rag.secrets (``keys``), keeping keys
out of messages (``redaction``), and the one retry policy: exponential backoff with jitter and
the provider's Retry-After (``retry``).

Pure but for ``keys.read_secret``, which is handed PL/Python's ``plpy`` by its caller.
"""

# Each name is imported from its module when first asked for: redaction and keys use
# regular expressions (re, enum: ~12 ms of a new connection's first search, issue 31), which a
# search only needs when something fails or a key is read.
_HOMES = {
    "EmbedderError": "errors", "LLMError": "errors", "ProviderError": "errors",
    "RerankError": "errors", "read_secret": "keys", "resolve_api_key": "keys",
    "redact": "redaction", "backoff_seconds": "retry", "retry_after_seconds": "retry",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pgask.providers' has no attribute {name!r}")
    value = getattr(__import__(f"pgask.providers.{home}", fromlist=[name]), name)
    globals()[name] = value  # asked for once
    return value


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
