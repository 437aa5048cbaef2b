"""The circuit breaker of query embeddings (pgask.providers.breaker), on a fake clock."""

from pgask.providers.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_and_probes_after_the_cool_down():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=clock)
    breaker.failed("down")
    breaker.failed("down")
    assert breaker.allows() and breaker.state() == "closed"
    breaker.failed("still down")
    assert not breaker.allows() and breaker.state() == "open"
    assert breaker.last_error == "still down" and breaker.seconds_left() == 10
    clock.now = 9.9
    assert not breaker.allows()
    clock.now = 10
    assert breaker.allows() and breaker.state() == "half-open"
    breaker.failed("down again")  # the probe failed: open for another cool-down
    assert not breaker.allows()
    clock.now = 20
    assert breaker.allows()
    breaker.succeeded()
    assert breaker.state() == "closed" and breaker.failed_in_a_row == 0
    breaker.failed("once")
    assert breaker.allows()


def test_a_success_resets_the_count():
    breaker = CircuitBreaker(failures=2, cooldown=1, clock=Clock())
    breaker.failed("a")
    breaker.succeeded()
    breaker.failed("b")
    assert breaker.allows()
