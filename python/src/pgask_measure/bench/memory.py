"""Memory per connection (issue 31): what a connection that searches and answers costs, with
the shared model process (the default) and with a copy of the model in each backend
(rag.settings embedding_service = off, what every backend did before), plus the first search
in a new connection against a warm one, and search and ingest rates on both paths.

Memory is USS, the pages only that process holds (Private_Clean + Private_Dirty of
/proc/PID/smaps_rollup), of each connection's backend (pg_backend_pid()) idle, after one
rag.search and after one rag_answer; the shared process's USS is added to the total. Reading
another process's smaps_rollup needs its OS user or root: run the benchmark as root or as the
server's user, or this part is skipped.

`pgask bench --only memory --memory-connections 50` measures 50 connections on the shared
path; the in-backend baseline uses --memory-baseline-connections (default 10: each holds
~200 MB) and is reported per connection.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from pgask_measure.bench.common import connect, timed_ms
from pgask_measure.bench.report import Figure

CONNECTIONS = 50
BASELINE_CONNECTIONS = 10
RATE_QUERIES = 40  # per round and path
RATE_PAGES = 12
# Rates come from rounds in which the two paths alternate, each on its own warm
# connection opened side by side (order swapped every round): one round of 60 queries per path
# was 0.66x one run and 1.12x the next at the same load, and 3 rounds of 200 queries, each on
# a new connection, still ranged 0.79-1.22x on a quiet machine. Short paired rounds put both
# paths under the same load, which changes during a run; each rate is the work of all its
# rounds over their time, so a busy stretch weighs on both paths alike.
SEARCH_ROUNDS = 10
INGEST_ROUNDS = 5

# What each layer adds to an idle backend, loaded one after the other in one connection.
# The search code comes before numpy: a search on the shared path imports no numpy.
LAYERS = (
    ("PL/Python + pgask init", "SELECT rag._python_init()"),
    ("search code (pgask.retrieval)", "DO $$ import pgask.retrieval.search $$ LANGUAGE plpython3u"),
    ("numpy", "DO $$ import numpy $$ LANGUAGE plpython3u"),
    ("sentence splitter (pgask.text)", "DO $$ import pgask.text $$ LANGUAGE plpython3u"),
    ("answerer (pgask.answering)", "DO $$ import pgask.answering.pipeline $$ LANGUAGE plpython3u"),
    ("tokenizer (MiniLM word pieces)",
     "DO $$ from pgask.tokenization import count_word_pieces as c; c('a b') $$"
     " LANGUAGE plpython3u"),
    ("onnxruntime", "DO $$ import onnxruntime $$ LANGUAGE plpython3u"),
    ("model (ONNX session)",
     "DO $$ from pgask.embedders.local import get_local_embedder as g; g().embed(['a'])"
     " $$ LANGUAGE plpython3u"),
)


def uss_mb(pid: int) -> float:
    """Private_Clean + Private_Dirty of a process, in MB (2^20 bytes)."""
    kb = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            kb += int(rest.split()[0])
    return kb / 1024


def readable(conn: psycopg.Connection) -> str | None:
    """Why backends' memory cannot be read from here (None if it can)."""
    (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        uss_mb(pid)
    except OSError as exc:
        return (f"memory: cannot read /proc/{pid}/smaps_rollup ({exc.strerror}); run the "
                "benchmark as root or as the server's OS user, on the server's machine")
    return None


def set_path(conn: psycopg.Connection, shared: bool) -> None:
    """Takes effect in connections opened from now on."""
    if shared:
        conn.execute("DELETE FROM rag.settings WHERE key = 'embedding_service'")
    else:
        conn.execute("INSERT INTO rag.settings (key, value) VALUES ('embedding_service', 'off')"
                     " ON CONFLICT (key) DO UPDATE SET value = 'off'")


def service_pid(conn: psycopg.Connection) -> int | None:
    (path,) = conn.execute("SELECT rag.embedding_path()").fetchone()
    found = re.match(r"shared model process, pid (\d+)", path)
    return int(found.group(1)) if found else None


def fleet(url: str, n: int, asked: Sequence[str]) -> dict:
    """n connections open together; each runs a first rag.search (a text new to it), a
    second one (warm), then rag_answer. USS of each backend at each step, in MB."""
    conns = [connect(url) for _ in range(n)]
    try:
        pids = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns]
        idle = [uss_mb(p) for p in pids]
        first, warm = [], []
        for i, c in enumerate(conns):
            first.append(timed_ms(c, "SELECT * FROM rag.search(%s, 5)",
                                  (asked[(2 * i) % len(asked)],)))
            warm.append(timed_ms(c, "SELECT * FROM rag.search(%s, 5)",
                                 (asked[(2 * i + 1) % len(asked)],)))
        searched = [uss_mb(p) for p in pids]
        for i, c in enumerate(conns):
            c.execute("SELECT rag_answer(%s)", (asked[(3 * i + 7) % len(asked)],)).fetchall()
        answered = [uss_mb(p) for p in pids]
        service = service_pid(conns[0])
        return {"n": n, "idle": idle, "searched": searched, "answered": answered,
                "first": first, "warm": warm,
                "service_uss": uss_mb(service) if service else 0.0, "service_pid": service}
    finally:
        for c in conns:
            c.close()


def rates(url: str, conn: psycopg.Connection, asked: Sequence[str]) -> dict:
    """Searches per second (new texts) and chunks per second of rag.process_queue (a fresh
    pipeline over bench_mem_docs), per round, for each path: {"own": {...}, "shared": {...}},
    each holding per round (work done, seconds) in "search" and "ingest", and the chunk
    count of one ingest round."""
    conns = {}
    try:
        for path in ("own", "shared"):
            set_path(conn, shared=path == "shared")
            c = connect(url)
            conns[path] = c
            # The path is read at the connection's first PL/Python call: warm it now, before
            # the setting changes for the other one.
            c.execute("SELECT * FROM rag.search('warm up', 5)").fetchall()
        out = {path: {"search": [], "ingest": [], "chunks": 0} for path in conns}
        n = 0
        for r in range(SEARCH_ROUNDS):
            for path in (("own", "shared") if r % 2 == 0 else ("shared", "own")):
                began = time.perf_counter()
                for _ in range(RATE_QUERIES):  # new texts even where asked holds fewer
                    conns[path].execute("SELECT * FROM rag.search(%s, 5)",
                                        (f"{asked[n % len(asked)]} ({n})",)).fetchall()
                    n += 1
                out[path]["search"].append((RATE_QUERIES, time.perf_counter() - began))
        for r in range(INGEST_ROUNDS):
            for path in (("shared", "own") if r % 2 == 0 else ("own", "shared")):
                c, pipeline = conns[path], f"mem_{path}{r}"
                c.execute("SELECT rag.create_pipeline(%s, 'bench_mem_docs', 'body')",
                          (pipeline,))
                began = time.perf_counter()
                c.execute("CALL rag.process_queue(%s, batch_size => 16, max_seconds => 3600)",
                          (pipeline,))
                seconds = time.perf_counter() - began
                (chunks,) = c.execute(f"SELECT count(*) FROM rag.{pipeline}_chunks").fetchone()
                c.execute("SELECT rag.drop_pipeline(%s)", (pipeline,))
                out[path]["ingest"].append((chunks, seconds))
                out[path]["chunks"] = chunks
        for path, c in conns.items():  # each measured on the path it was meant for
            (used,) = c.execute("SELECT rag.embedding_path()").fetchone()
            if used.startswith("shared") != (path == "shared"):
                raise RuntimeError(f"the {path} connection embedded through: {used}")
        return out
    finally:
        for c in conns.values():
            c.close()


def layers(url: str) -> list[tuple[str, float, float]]:
    """(layer, MB it adds, ms it takes) in one fresh in-backend connection."""
    out = []
    with connect(url) as c:
        (pid,) = c.execute("SELECT pg_backend_pid()").fetchone()
        before = uss_mb(pid)
        for name, sql in LAYERS:
            ms = timed_ms(c, sql) if not sql.startswith("DO") else _run_ms(c, sql)
            now = uss_mb(pid)
            out.append((name, now - before, ms))
            before = now
    return out


def _run_ms(conn: psycopg.Connection, sql: str) -> float:
    began = time.perf_counter()
    conn.execute(sql)
    return (time.perf_counter() - began) * 1000


def _pooled(done: list[tuple[float, float]]) -> float:
    """The rate of rounds of (work, seconds) taken together."""
    return sum(work for work, _ in done) / sum(seconds for _, seconds in done)


def _added(run: dict, step: str) -> list[float]:
    return [after - idle for after, idle in zip(run[step], run["idle"], strict=True)]


def bench_memory(url: str, conn: psycopg.Connection, pages: list, asked: Sequence[str],
                 connections: int = CONNECTIONS,
                 baseline_connections: int = BASELINE_CONNECTIONS) -> list[Figure]:
    from pgask_measure.bench.answer import load_documents

    (docs,) = conn.execute("SELECT count(*) FROM rag.documents").fetchone()
    if not docs:
        load_documents(conn, pages)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_mem_docs (id integer PRIMARY KEY,"
                 " body text NOT NULL)")
    conn.execute("TRUNCATE bench_mem_docs")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO bench_mem_docs VALUES (%s, %s)",
                        [(i, p.content) for i, p in enumerate(pages[:RATE_PAGES])])
    try:
        set_path(conn, shared=False)
        own_layers = layers(url)
        own = fleet(url, baseline_connections, asked)
        set_path(conn, shared=True)
        service_pid(conn)  # started before the measured connections, as on a running server
        shared = fleet(url, connections, asked)
        rounds = rates(url, conn, asked)
    finally:
        set_path(conn, shared=True)
    figures = []
    for step, label in (("idle", "idle"), ("searched", "after rag.search"),
                        ("answered", "after rag_answer")):
        values = shared[step] if step == "idle" else _added(shared, step)
        value = statistics.mean(values)
        base = statistics.mean(own[step] if step == "idle" else _added(own, step))
        figures.append(Figure(
            f"memory per connection, {label} (USS MB)", value, "MB",
            "model in each backend", base,
            "USS of the backend" + (" idle" if step == "idle" else " minus its idle USS")
            + f"; mean of {shared['n']} connections open together (baseline: "
            f"{own['n']} connections); max {max(values):.1f} MB"))
    added_total = sum(_added(shared, "answered")) + shared["service_uss"]
    own_per = statistics.mean(_added(own, "answered"))
    figures.append(Figure(
        f"memory total, {shared['n']} searching connections (USS MB)", added_total, "MB",
        f"{shared['n']} x model in each backend", own_per * shared["n"],
        f"sum over the connections of USS after rag_answer minus idle, plus the shared model "
        f"process (pid {shared['service_pid']}): {shared['service_uss']:.0f} MB; baseline "
        f"extrapolated from {own['n']} connections"))
    for run, path in ((shared, "shared model process"), (own, "model in each backend")):
        figures.append(Figure(
            f"first search in a new connection p50 ({path})", statistics.median(run["first"]),
            "ms", "warm connection p50", statistics.median(run["warm"]),
            f"rag.search(q, 5), a text new to the connection, in each of {run['n']} new "
            f"connections (first p90 {sorted(run['first'])[int(0.9 * len(run['first']))]:.0f}"
            f" ms); warm: the same connection's next new text"))
    for key, what, unit, how in (
            ("search", "search rate, shared model process (queries/s)", "q/s",
             f"{RATE_QUERIES} new texts per round, rag.search(q, 5)"),
            ("ingest", "ingest rate, shared model process (chunks/s)", "chunks/s",
             f"rag.process_queue on {RATE_PAGES} manual pages ({rounds['own']['chunks']} "
             "chunks) per round")):
        per_round = [(sw / ss, ow / os_) for (sw, ss), (ow, os_)
                     in zip(rounds["shared"][key], rounds["own"][key], strict=True)]
        ratios = sorted(s / o for s, o in per_round)
        figures.append(Figure(
            what, _pooled(rounds["shared"][key]), unit, "model in each backend",
            _pooled(rounds["own"][key]),
            f"{how}; {len(ratios)} rounds, the paths alternating on two warm connections; "
            f"rate = all rounds' work over their time; the rounds' own ratios: median "
            f"{statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x "
            f"(shared/own {unit}: " + ", ".join(f"{s:.1f}/{o:.1f}" for s, o in per_round)
            + ")"))
    whole = sum(mb for _, mb, _ in own_layers)
    for name, mb, ms in own_layers:
        figures.append(Figure(f"backend layer: {name} (USS MB)", mb, "MB",
                              "all layers", whole,
                              f"what it adds to a backend, loaded after the layers above, in "
                              f"{ms:.0f} ms"))
    return figures
