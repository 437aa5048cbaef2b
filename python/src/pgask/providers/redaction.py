"""API keys out of messages: providers echo parts of a wrong key back in their errors."""

from __future__ import annotations

import re

_KEY_PATTERN = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_*\-.]{4,}", re.IGNORECASE)


# Runs of characters that can be part of a key, or of a provider's abbreviation of one
# ("sk-...abcd", "sk-proj-****abcd").
_TOKEN = re.compile(r"[A-Za-z0-9_\-.*+/=~]{4,}")
FRAGMENT = 4


def redact(message: str, secret: str | None) -> str:
    """The message without the API key, nor any fragment of it, nor anything shaped like a
    key: providers echo parts of a wrong key back (its first or last characters), so every
    word of the message that shares FRAGMENT consecutive characters with the key goes too."""
    if secret:
        message = message.replace(secret, "***")
        if len(secret) >= 2 * FRAGMENT:
            pieces = {secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}

            def scrub(match: re.Match) -> str:
                word = match.group(0)
                if any(word[i:i + FRAGMENT] in pieces
                       for i in range(len(word) - FRAGMENT + 1)):
                    return "***"
                return word

            message = _TOKEN.sub(scrub, message)
    return _KEY_PATTERN.sub(lambda m: m.group(1) + "***", message)
