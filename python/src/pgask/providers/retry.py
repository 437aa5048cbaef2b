"""The one retry policy for providers: exponential backoff with jitter, and the provider's
Retry-After.

The queue (rag.process_queue) waits between attempts of a job, the chat client between
attempts of one answer; both use backoff_seconds. The wait doubles from ``base`` per attempt
up to ``cap``, and is drawn uniformly from its upper half, so that clients that failed
together do not retry together, yet never wait less than half the backoff. A provider's own
Retry-After is a floor. ``max_wait`` bounds the total where someone is waiting for the
answer (the chat client passes its retry_max_seconds); the queue has no such bound, so a
provider that asks for an hour gets an hour.
"""

from __future__ import annotations

import time


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None = None,
                    *, max_wait: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    import random  # here: only a retry needs it (~1.5 ms of a backend's first search)

    wait = max(delay * random.uniform(0.5, 1.0), retry_after or 0.0)
    return wait if max_wait is None else min(wait, max_wait)


def retry_after_seconds(headers) -> float | None:
    """The wait a 429 or 503 asks for: OpenAI's `retry-after-ms`, else `Retry-After` in
    seconds or as an HTTP date; None when absent or unreadable. ``headers``: a mapping with
    case-insensitive keys (httpx's, urllib's), or None."""
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            import email.utils  # an HTTP date: rare, and a new connection's import is ~6 ms

            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None
