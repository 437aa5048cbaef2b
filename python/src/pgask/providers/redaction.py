"""API keys out of messages: providers echo parts of a wrong key back in their errors."""

from __future__ import annotations

import re

_KEY_PATTERN = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_*\-.]{4,}", re.IGNORECASE)


def redact(message: str, secret: str | None) -> str:
    """The message without the API key, nor anything shaped like one."""
    if secret:
        message = message.replace(secret, "***")
    return _KEY_PATTERN.sub(lambda m: m.group(1) + "***", message)
