"""The one progress display of the command-line tools (ingest, backfill, eval), on stderr so
that stdout keeps only results: a tqdm bar sized to the terminal when stderr is one, and plain
lines every PLAIN_INTERVAL seconds otherwise (a log, CI, `make demo > log`), where a bar's
carriage-return redraws would be hundreds of lines."""

from __future__ import annotations

import sys
import time

# Seconds between two plain lines: a log of a ten-minute backfill gets about 20.
PLAIN_INTERVAL = 30.0


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, *, stream=None,
                 **options):
    """A progress display with tqdm's update/set_postfix/close; with ``enabled`` false, one
    that counts but shows nothing. ``stream`` defaults to sys.stderr."""
    stream = sys.stderr if stream is None else stream
    if enabled and not _is_terminal(stream):
        return PlainProgress(total, desc, unit, stream)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=stream,
                dynamic_ncols=True, **options)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """Progress as whole lines: ``ingest: 120/214 files (56%), 8.1 files/s, 12 s left, added=3``
    at most every ``interval`` seconds, and a last line at close."""

    def __init__(self, total: int, desc: str, unit: str, stream, interval: float = PLAIN_INTERVAL,
                 clock=time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream, self.interval, self.clock = stream, interval, clock
        self.n = 0
        self.postfix: dict = {}
        self.started = self.last = clock()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.interval:
            self._line()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=True)

    def _line(self, done: bool = False) -> None:
        now = self.clock()
        self.last = now
        elapsed = now - self.started
        parts = [f"{self.n}/{self.total} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.n // self.total}%)"
        if elapsed > 0 and self.n:
            rate = self.n / elapsed
            parts.append(f"{rate:.1f} {self.unit}s/s")
            if not done and self.total > self.n:
                parts.append(f"{(self.total - self.n) / rate:.0f} s left")
        if done:
            parts.append(f"done in {elapsed:.1f} s")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        print(f"{self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
