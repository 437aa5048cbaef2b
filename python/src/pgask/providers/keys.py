"""API keys of providers (embedders, LLMs, rerankers): a registry row's ``api_key_env`` names
an environment variable of the database server, or ``secret:NAME``, an entry of rag.secrets
(rag.set_secret), which only the owner of schema rag may read."""

from __future__ import annotations

import os
from collections.abc import Callable

from pgask.plans import prepared
from pgask.providers.errors import EmbedderError, LLMError, ProviderError, RerankError

# What a missing or unreadable key is raised as, by the kind of provider asking.
_ERRORS: dict[str, type[ProviderError]] = {
    "embedder": EmbedderError, "LLM": LLMError, "reranker": RerankError,
}


def read_secret(plpy, secret: str) -> str | None:
    """A key from rag.secrets, through rag._secret, which only the owner of schema rag may
    run: a role asking a question with an LLM or reranker whose key is a 'secret:' entry gets
    this error, which callers turn into a fallback or a clear message."""
    try:
        found = plpy.execute(prepared(plpy, "SELECT rag._secret($1) AS v", ["text"]), [secret])
    except plpy.SPIError as exc:
        raise ProviderError(
            f"the role running this may not read API keys stored with rag.set_secret ({exc}); "
            "give the provider a key in an environment variable of the database server "
            "instead, or run this as the owner of schema rag") from None
    return found[0]["v"] if found else None


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
        except ProviderError as exc:
            raise error(str(exc), retryable=False) from None
        where = f"rag.secrets entry {reference[len('secret:'):]!r} (rag.set_secret)"
    else:
        value = os.environ.get(reference)
        where = f"environment variable {reference} of the database server"
    if not value:
        raise error(f"{what} {spec.name}: no API key: {where} is not set", retryable=False)
    return value
