"""pgask.progress: a bar on a terminal, a few whole lines anywhere else (a log would get one
line per redraw of a bar)."""

import io

from pgask.progress import PlainProgress, progress_bar


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_per_interval_and_a_last_one():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(1000, "ingest", "file", out, interval=30, clock=clock)
    for _ in range(1000):  # 1000 files over 95 s: lines at 30, 60 and 90 s, then close
        clock.now += 0.095
        bar.update(1)
        bar.set_postfix({"added": 7}, refresh=False)
    bar.close()
    bar.close()  # a second close writes nothing
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("ingest: 316/1000 files (31%), 10.5 files/s, 65 s left")
    assert lines[-1] == "ingest: 1000/1000 files (100%), 10.5 files/s, done in 95.0 s, added=7"


def test_a_quick_run_writes_only_its_last_line():
    out = io.StringIO()
    bar = progress_bar(3, "backfill documents", "row", stream=out)
    bar.update(2)
    bar.update(1)
    bar.set_postfix(failed=0)
    bar.close()
    (line,) = out.getvalue().splitlines()
    assert line.startswith("backfill documents: 3/3 rows (100%)") and line.endswith("failed=0")


def test_a_terminal_gets_tqdm_and_disabled_shows_nothing():
    from tqdm import tqdm

    bar = progress_bar(5, "eval", "query", stream=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    quiet = io.StringIO()
    bar = progress_bar(5, "eval", "query", enabled=False, stream=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""

