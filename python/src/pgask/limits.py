"""Bounds on the work one call may do, and the tick that lets PostgreSQL interrupt it.

The bounds are rows of rag.settings (key, value), with the defaults below when a row is
missing; docs/reliability.md lists them. A bound that is exceeded raises LimitError, whose
message names the setting, so the SQL edge can turn it into SQLSTATE 53400 (or, in a
pipeline, a dead letter with that message).

PL/Python never checks for interrupts while Python runs, so statement_timeout and
pg_cancel_backend wait until the next SPI call. Ticker is that call: long loops call it
often, and at most every TICK_SECONDS it runs a trivial prepared SELECT, where the server
raises query_canceled if a cancel is pending.
"""

from __future__ import annotations

import time
from collections import namedtuple

TICK_SECONDS = 0.1


# The bounds and their defaults. Limits is a named tuple, not a dataclass: importing
# dataclasses (inspect, ast, dis) costs a backend about 20 ms of its first search (issue 31).
_DEFAULTS = {
    # A source row's (or rag.chunk's) text longer than this is refused: chunking a 20 MB
    # word took minutes.
    "max_document_chars": 1_000_000,
    # Chunks one document may give; more is refused (a dead letter in a pipeline).
    "max_chunks_per_document": 5_000,
    # A rag.search filter: every JSON object and condition counts as a node, {} included.
    "max_filter_nodes": 1_000,
    "max_filter_depth": 32,
    # Texts per embedding request sent between two lease renewals by rag.process_queue.
    "embed_batch_texts": 64,
    # Rows a sync pipeline processes inside one writer's statement; the rest go to the
    # workers, so a bulk write through a sync pipeline is not held up by embedding.
    "sync_max_rows": 100,
    # A query's embedding (rag.search, rag.answer) has someone waiting on it, so it is not
    # given the worker's timeout_seconds (30 s): each request may take this long (or the
    # embedder's timeout_seconds, if shorter) ...
    "query_embed_timeout_ms": 1_000,
    # ... and all its requests, retries and their waits included, this long; then hybrid
    # search goes on by keyword only (SearchOptions.on_embedder_error).
    "query_embed_budget_ms": 2_000,
    # After this many failed requests in a row, a backend asks that embedder nothing for
    # query_breaker_cooldown_seconds: a query then costs no wait (pgask.providers.breaker).
    "query_breaker_failures": 3,
    "query_breaker_cooldown_seconds": 10,
}


class Limits(namedtuple("Limits", _DEFAULTS, defaults=_DEFAULTS.values())):
    """The bounds in force: rag.settings' values over _DEFAULTS (parse, read)."""

    __slots__ = ()


DEFAULTS = Limits()
KEYS = Limits._fields


class LimitError(ValueError):
    """A bound of rag.settings was exceeded; the message names the setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{message}; raise it with UPDATE rag.settings if this is meant")
        self.setting = setting


def parse(rows: dict[str, str]) -> Limits:
    """Limits from rag.settings' text values; a value that is not a positive integer keeps
    the default (a typo in a setting must not stop every write)."""
    values = {}
    for key in KEYS:
        raw = rows.get(key)
        try:
            value = int(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is not None and value > 0:
            values[key] = value
    return Limits(**values)


def read(plpy) -> Limits:
    """The bounds now in force (one indexed query)."""
    from pgask.plans import prepared

    rows = plpy.execute(prepared(plpy, "SELECT key, value FROM rag.settings WHERE key = ANY($1)",
                                 ["text[]"]), [list(KEYS)])
    return parse({r["key"]: r["value"] for r in rows})


def check_document(text: str, limits: Limits) -> None:
    if len(text) > limits.max_document_chars:
        raise LimitError("max_document_chars", f"the text has {len(text)} characters, more "
                         f"than max_document_chars ({limits.max_document_chars})")


def check_chunks(n: int, limits: Limits) -> None:
    if n > limits.max_chunks_per_document:
        raise LimitError("max_chunks_per_document", f"the text gives {n} chunks, more than "
                         f"max_chunks_per_document ({limits.max_chunks_per_document})")


class Ticker:
    """A callable for long loops: runs `SELECT 1` at most every `every` seconds, where
    PostgreSQL acts on a pending cancel or statement timeout (raising query_canceled in
    Python, which callers must let through)."""

    def __init__(self, plpy, every: float = TICK_SECONDS) -> None:
        from pgask.plans import prepared

        self._plpy = plpy
        self._plan = prepared(plpy, "SELECT 1", [])
        self._every = every
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._plpy.execute(self._plan)


# SQLSTATEs of errors that must end the call, never be recorded as a job's failure:
# query_canceled (statement_timeout, pg_cancel_backend), admin shutdown and the like.
INTERRUPTS = ("57014", "57P01", "57P02", "57P03", "40001", "40P01")


def is_interrupt(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in INTERRUPTS
