"""The one error type embedders raise, with what the queue needs to decide on a retry."""

from __future__ import annotations

import re


class EmbedderError(Exception):
    """An embedding call failed. `retryable` says whether trying again later can help
    (timeouts, 429, 5xx, connection refused); `retry_after` is the provider's own wait."""

    def __init__(self, message: str, *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


_KEY_PATTERN = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_*\-.]{4,}", re.IGNORECASE)


def redact(message: str, secret: str | None) -> str:
    """The message without the API key (providers echo parts of a wrong key back)."""
    if secret:
        message = message.replace(secret, "***")
    return _KEY_PATTERN.sub(lambda m: m.group(1) + "***", message)
