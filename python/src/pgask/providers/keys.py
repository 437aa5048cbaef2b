"""API keys of providers (embedders, LLMs, rerankers): a registry row's ``api_key_env`` names
an environment variable of the database server, or ``secret:NAME``, an entry of rag.secrets
(rag.set_secret), which only the owner of schema rag may read, and members of pgask_reader
may use (never read)."""

from __future__ import annotations

import os
from collections.abc import Callable

from pgask.plans import prepared
from pgask.providers.errors import (
    EmbedderError,
    KeyAccessError,
    LLMError,
    ProviderError,
    RerankError,
)

# What a missing or unreadable key is raised as, by the kind of provider asking.
_ERRORS: dict[str, type[ProviderError]] = {
    "embedder": EmbedderError, "LLM": LLMError, "reranker": RerankError,
}


# Keys handed over by rag._use_secret (``load``), taken by ``read`` in the same backend, and
# the origins each may be sent to (None: DEFAULT_ORIGINS).
_loaded: dict[str, str] = {}
_origins: dict[str, frozenset[str] | None] = {}

# Where a stored key may go when rag.set_secret named no base_urls: the public endpoints of
# hosted providers (a provider registered without base_url uses OpenAI's).
DEFAULT_ORIGINS = frozenset({
    "https://api.openai.com", "https://api.cohere.com", "https://api.cohere.ai",
    "https://api.voyageai.com", "https://api.jina.ai", "https://api.mistral.ai",
    "https://api.together.xyz", "https://api.groq.com", "https://api.deepseek.com",
    "https://openrouter.ai", "https://generativelanguage.googleapis.com",
})
_UNSET_BASE_URL = "https://api.openai.com"
# Environment variables a provider may send as its key: names of keys, not any variable of
# the server's environment (PGDATA, a password...). A pattern for re, imported where it is
# used: a search that reads no key imports no re (pgask.providers).
_KEY_VARIABLE = r"[A-Z][A-Z0-9_]*(KEY|TOKEN|SECRET)"


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lowercased, without a default port."""
    from urllib.parse import urlsplit  # here: ~5 ms of every backend's first search

    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def load(plpy, name: str) -> bool:
    """For rag._use_secret only: it runs as the owner (who may read rag.secrets), keeps the
    value here, inside the backend's Python interpreter, and returns to SQL only whether it
    exists. Only superusers can create PL/Python functions that could look in here
    (plpython3u is untrusted), so no role can read a key through SQL (docs/security.md)."""
    rows = plpy.execute(plpy.prepare(
        "SELECT value, base_urls FROM rag.secrets WHERE name = $1", ["text"]), [name])
    if not rows:
        _loaded.pop(name, None)
        return False
    _loaded[name] = rows[0]["value"]
    urls = rows[0]["base_urls"]
    _origins[name] = None if urls is None else frozenset(origin(u) for u in urls)
    return True


def read_secret(plpy, secret: str) -> str | None:
    """A key from rag.secrets for a provider call of the current role, through
    rag._use_secret, which members of pgask_reader (and the owner) may run; checked on every
    call, so a role that lost pgask_reader cannot use a provider built earlier. Other roles
    get KeyAccessError (SQLSTATE 42501 where it reaches SQL), naming the fix."""
    try:
        plpy.execute(prepared(plpy, "SELECT rag._use_secret($1)", ["text"]), [secret])
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) != "42501":
            raise
        role = plpy.execute("SELECT current_user AS r")[0]["r"]
        raise KeyAccessError(
            f"role {role} may not read API keys stored with rag.set_secret (members of "
            f"pgask_reader may use them): an admin grants that with SELECT "
            f"rag.grant_usage('{role}')") from None
    return _loaded.pop(secret, None)


def resolve_api_key(spec, read_secret: Callable[[str], str | None],
                    what: str = "embedder") -> str | None:
    """The key named by spec.api_key_env (spec: anything with ``name`` and ``api_key_env``),
    or None when it names none. ``what``: "embedder", "LLM" or "reranker", which says the
    error type raised when the key is missing or may not be read."""
    error = _ERRORS[what]
    reference = spec.api_key_env
    if not reference:
        return None
    base_url = getattr(spec, "base_url", None)
    destination = origin(base_url) if base_url else _UNSET_BASE_URL
    if reference.startswith("secret:"):
        name = reference[len("secret:"):]
        try:
            value = read_secret(name)
        except KeyAccessError:
            raise
        except ProviderError as exc:
            raise error(str(exc), retryable=False) from None
        where = f"rag.secrets entry {name!r} (rag.set_secret)"
        allowed = _origins.get(name)
        if value and destination not in (DEFAULT_ORIGINS if allowed is None else allowed):
            raise error(f"{what} {spec.name}: the key {where} may not be sent to "
                        f"{destination}: rag.set_secret({name!r}, ..., base_urls => "
                        "ARRAY[...]) names the servers it may go to", retryable=False)
    else:
        import re

        if not re.fullmatch(_KEY_VARIABLE, reference):
            raise error(f"{what} {spec.name}: api_key_env must name a variable of a key "
                        f"(ending in KEY, TOKEN or SECRET, such as OPENAI_API_KEY), got "
                        f"{reference!r}", retryable=False)
        value = os.environ.get(reference)
        where = f"environment variable {reference} of the database server"
    if not value:
        raise error(f"{what} {spec.name}: no API key: {where} is not set", retryable=False)
    return value
