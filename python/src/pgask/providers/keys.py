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


# Keys handed over by rag._use_secret (``load``), taken by ``read`` in the same backend.
_loaded: dict[str, str] = {}


def load(plpy, name: str) -> bool:
    """For rag._use_secret only: it runs as the owner (who may read rag.secrets), keeps the
    value here, inside the backend's Python interpreter, and returns to SQL only whether it
    exists. Only superusers can create PL/Python functions that could look in here
    (plpython3u is untrusted), so no role can read a key through SQL (docs/security.md)."""
    rows = plpy.execute(plpy.prepare(
        "SELECT value FROM rag.secrets WHERE name = $1", ["text"]), [name])
    if not rows:
        _loaded.pop(name, None)
        return False
    _loaded[name] = rows[0]["value"]
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
    if reference.startswith("secret:"):
        try:
            value = read_secret(reference[len("secret:"):])
        except KeyAccessError:
            raise
        except ProviderError as exc:
            raise error(str(exc), retryable=False) from None
        where = f"rag.secrets entry {reference[len('secret:'):]!r} (rag.set_secret)"
    else:
        value = os.environ.get(reference)
        where = f"environment variable {reference} of the database server"
    if not value:
        raise error(f"{what} {spec.name}: no API key: {where} is not set", retryable=False)
    return value
