"""A query's embedding, for rag.search and rag.answer: someone is waiting on it, so it does not
wait like a worker does.

- Each request may take rag.settings query_embed_timeout_ms (1000; or the embedder's own
  timeout_seconds if shorter), and all of a query's requests, retries and their waits
  included, query_embed_budget_ms (2000); retries follow the one policy
  (pgask.providers.retry) within that budget, a Retry-After beyond it ending them.
  A request's timeout is a total deadline, redirects and a dripped answer included
  (pgask.providers.deadline).
- A circuit breaker per embedder configuration and backend (pgask.providers.breaker): after
  query_breaker_failures (3) failed requests in a row, no request is sent for
  query_breaker_cooldown_seconds (10) and the query learns at once that the embedder is
  down; then one probe decides whether it is back. A changed rag.embedders row starts a
  new breaker (a fix is used at once); a refused input (HTTP 400, 413, 422) is that input's,
  not an outage, and counts for nothing.
- A 200 without a usable vector (NaN, infinite, zero, misshapen, too few) is a failure like
  any other (pgask.embedders.openai_compat), never cached.
- Repeated texts (a question asked again) come from a bounded per-backend cache.

An embedding that cannot be had raises EmbedderUnavailable, whose message names the embedder
and why; search decides whether to go on by keyword (pgask.retrieval.search). A role that may
not use the embedder's stored key gets KeyAccessError: that is a privilege, not an outage.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from pgask import limits, providers  # providers.redact: imported (with re) on a failure
from pgask.embedders import vector_literal
from pgask.embedders.registry import load_embedder
from pgask.providers.breaker import CircuitBreaker
from pgask.providers.errors import EmbedderError, KeyAccessError
from pgask.providers.retry import backoff_seconds

QUERY_CACHE_SIZE = 256
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 0.5
# Statuses that refuse this input (too long, not accepted), not the service: the provider is
# up and answered at once, so they neither open the breaker for everyone nor are retried.
INPUT_REFUSED = (400, 413, 422)

_vectors: OrderedDict[tuple[object, str], str] = OrderedDict()
_breakers: dict[object, CircuitBreaker] = {}


class EmbedderUnavailable(Exception):
    """The query's embedding cannot be had now (down, slow, failing, no key)."""


class SearchUnavailable(Exception):
    """A search cannot run as asked: the query's embedding cannot be had, and the mode
    (vector) or option on_embedder_error ('error') says not to go on by keyword. SQLSTATE
    38000, with a hint naming the way out."""

    def __init__(self, message: str, mode: str) -> None:
        super().__init__(message)
        if mode == "vector":
            self.hint = ("Search with mode => 'keyword' while the embedder is down, or mode "
                         "=> 'hybrid', which then goes on by keyword.")
        else:
            self.hint = ("Option on_embedder_error is 'error'; with 'degrade' (the default) "
                         "hybrid search goes on by keyword while the embedder is down.")


def embed_query(plpy, embedder: str, text: str) -> str:
    """The query's vector in pgvector's text form, or EmbedderUnavailable."""
    try:
        provider = load_embedder(plpy, embedder)
    except KeyAccessError:
        raise
    except EmbedderError as exc:  # no key, an unknown embedder
        raise EmbedderUnavailable(str(exc)) from None
    key = (provider.spec, text)
    if key in _vectors:
        _vectors.move_to_end(key)
        return _vectors[key]
    if provider.spec.provider == "local":
        # The shared model process, or this backend's model when it is off or down
        # (pgask.embedders.service): never a model copy per backend by default.
        from pgask.embedders.service import backend_embedder

        vector = backend_embedder().query_literal(text)
    else:
        vector = vector_literal(_ask(provider, text, limits.read(plpy)))
    _vectors[key] = vector
    if len(_vectors) > QUERY_CACHE_SIZE:
        _vectors.popitem(last=False)
    return vector


def breaker_for(spec, bounds: limits.Limits) -> CircuitBreaker:
    """This backend's breaker for an embedder's or a reranker's configuration (its row in
    rag.embedders or rag.rerankers: a changed base_url, key, model or options starts afresh,
    so a fix is used at once), with the settings now in force."""
    breaker = _breakers.get(spec)
    if breaker is None:
        # One per configuration in use: the breakers of rows since changed are dropped.
        for old in [s for s in _breakers if type(s) is type(spec) and s.name == spec.name]:
            del _breakers[old]
        breaker = _breakers[spec] = CircuitBreaker()
    breaker.failures = bounds.query_breaker_failures
    breaker.cooldown = float(bounds.query_breaker_cooldown_seconds)
    return breaker


def _ask(provider, text: str, bounds: limits.Limits):
    breaker = breaker_for(provider.spec, bounds)
    if not breaker.allows():
        raise EmbedderUnavailable(
            f"{breaker.last_error} (not asked again for {breaker.seconds_left():.0f} s: it "
            f"failed {breaker.failed_in_a_row} times in a row in this session; rag.settings "
            "query_breaker_failures, query_breaker_cooldown_seconds)")
    per_request = bounds.query_embed_timeout_ms / 1000
    deadline = time.monotonic() + bounds.query_embed_budget_ms / 1000
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        timeout, setting = min((per_request, "rag.settings query_embed_timeout_ms"),
                               (provider.timeout, "the embedder's options.timeout_seconds"),
                               (left, "rag.settings query_embed_budget_ms"))
        try:
            vector = provider.embed_query(text, max(timeout, 0.001), setting)
        except EmbedderError as exc:
            if exc.status in INPUT_REFUSED:
                raise EmbedderUnavailable(str(exc)) from None
            breaker.failed(str(exc))
            if not exc.retryable or not breaker.allows():
                raise EmbedderUnavailable(str(exc)) from None
            wait = backoff_seconds(attempt, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS,
                                   exc.retry_after)
            if time.monotonic() + wait >= deadline:
                raise EmbedderUnavailable(
                    f"{exc} (gave up after {attempt} request(s): rag.settings "
                    f"query_embed_budget_ms is {bounds.query_embed_budget_ms})") from None
            time.sleep(wait)
            continue
        except Exception as exc:  # noqa: BLE001 - a provider's own bug is its failure too
            shown = providers.redact(str(exc), getattr(provider, "_api_key", None))
            message = (f"embedder {provider.spec.name}: unexpected failure "
                       f"({type(exc).__name__}: {shown[:200]})")
            breaker.failed(message)
            raise EmbedderUnavailable(message) from None
        breaker.succeeded()
        return vector
