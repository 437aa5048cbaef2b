"""A circuit breaker per provider, for calls someone is waiting on (a query's embedding).

After ``failures`` failed requests in a row the breaker opens: for ``cooldown`` seconds no
request is sent and callers get the last error at once, so an outage costs each query
microseconds instead of a timeout. Once the cool-down has passed the breaker is half-open:
the next caller's request is a probe; its success closes the breaker, its failure opens it
for another cool-down. State lives in the process (one PostgreSQL backend): nothing is
shared, nothing written, so it works on a hot standby and in read-only transactions.

Pure: the clock is a parameter (``time.monotonic`` by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    # A plain class, not a dataclass: importing dataclasses costs a backend ~20 ms (issue 31).
    def __init__(self, failures: int = 3, cooldown: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures  # failed requests in a row that open the breaker
        self.cooldown = cooldown  # seconds it stays open before a probe
        self.clock = clock
        self.failed_in_a_row = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None

    def allows(self) -> bool:
        """Whether a request may be sent now: closed, or half-open (the cool-down passed)."""
        return self.opened_at is None or self.clock() - self.opened_at >= self.cooldown

    @property
    def half_open(self) -> bool:
        return self.opened_at is not None and self.allows()

    def seconds_left(self) -> float:
        """Seconds until the next probe (0 when requests may be sent)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def succeeded(self) -> None:
        self.failed_in_a_row = 0
        self.opened_at = None
        self.last_error = None

    def failed(self, error: str) -> None:
        self.failed_in_a_row += 1
        self.last_error = error
        if self.half_open or self.failed_in_a_row >= self.failures:
            self.opened_at = self.clock()

    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.allows() else "open"
