"""A total deadline for an HTTP request, not a per-read one.

httpx's timeouts (and so the openai client's) bound each read, write and connect: a provider
that sends its answer a byte at a time, each byte within the timeout, or redirects slowly,
holds the caller for as long as it likes, and PL/Python cannot be cancelled meanwhile (the
backend acts on a cancel only when the request returns). Inside ``with deadline(seconds):``
every socket operation of a client passed through ``with_deadlines`` gets at most the time
left, and raises httpcore's timeout (which httpx and openai report as a timeout) once none is
left: the request as a whole, redirects included, takes at most ``seconds``.

The deadline is per thread; outside a ``deadline`` block the client behaves as before.
"""

from __future__ import annotations

import importlib
import threading
import time
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def deadline(seconds: float):
    """Socket operations of clients with deadlines end within `seconds` from now."""
    previous = getattr(_local, "at", None)
    at = time.monotonic() + seconds
    _local.at = at if previous is None else min(at, previous)
    try:
        yield
    finally:
        _local.at = previous


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    at = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A network stream (httpcore's interface, duck-typed: the openai package may bring a
    renamed httpcore) whose operations get at most the deadline's time left."""

    def __init__(self, inner, errors) -> None:
        self._inner = inner
        self._errors = errors  # the pool's httpcore module: its timeouts are what it maps

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, self._errors.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, self._errors.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, self._errors.ConnectTimeout)),
            self._errors)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    def __init__(self, inner, errors) -> None:
        self._inner = inner
        self._errors = errors

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(self._inner.connect_tcp(
            host, port, _left(timeout, self._errors.ConnectTimeout), local_address,
            socket_options), self._errors)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self._inner.connect_unix_socket(
            path, _left(timeout, self._errors.ConnectTimeout), socket_options), self._errors)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def with_deadlines(client):
    """`client` (an httpx.Client, e.g. openai.DefaultHttpxClient()) with its connections,
    also those through proxies from the environment, under ``deadline`` blocks."""
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)  # None: no network (a test's transport)
        backend = getattr(pool, "_network_backend", None)
        if backend is None or isinstance(backend, _DeadlineBackend):
            continue
        errors = importlib.import_module(type(pool).__module__.split(".")[0])
        pool._network_backend = _DeadlineBackend(backend, errors)
    return client
