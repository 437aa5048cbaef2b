"""`make soak`: mixed writes and answers from several clients against a flaky provider.

Not part of `make test`: it runs minutes, loopback only, with bounded counts. A source table
gets random inserts, updates, deletes (and a rare truncate) from WRITERS clients while
ANSWERERS clients ask rag.answer questions over it and WORKERS connections process the queue;
the loopback embeddings server (tests/openai_server.py) fails on a schedule (HTTP 503, 429
with Retry-After, a delay past the timeout, a reset). At the end the queue is drained and the
pipeline is checked from scratch (tests/consistency.py). Prints throughput, p50/p95 latency
per kind of call, answers hybrid vs degraded to keyword search vs failed, the errors, and the
consistency check; exits 1 if anything is wrong.

    DATABASE_URL=... .venv/bin/python scripts/soak.py --writes 400 --answers 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from consistency import problems, queued  # noqa: E402
from fix_openai import EmbeddingServer, server_process  # noqa: E402

from pgask.localdb import database_url  # noqa: E402

WORDS = ("disk wal index vacuum replica lag query plan lock checkpoint backup restore "
         "partition tuple page buffer cache autovacuum bloat sequence trigger").split()
FAULTS = [{"status": 503, "times": 3}, {"status": 429, "retry_after": 1},
          {"delay": "timeout"}, {"reset": True}, {"status": 500, "times": 2}]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.errors: Counter = Counter()
        self.answers: Counter = Counter()  # hybrid, degraded (keyword only), failed

    def timed(self, kind: str, call):
        """The call's result, or None when it failed (counted by its SQLSTATE)."""
        started = time.perf_counter()
        try:
            result = call()
        except psycopg.Error as exc:
            with self.lock:
                self.errors[f"{kind}: {exc.sqlstate} {str(exc).splitlines()[0][:90]}"] += 1
            return None
        with self.lock:
            self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        return result


def text(rng: random.Random) -> str:
    return "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 150)))
                       for _ in range(rng.randint(1, 3)))


def writer(url, seed, count, stats, stop):
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            if stop.is_set():
                return
            op = rng.choices(["insert", "update", "delete", "truncate"], [45, 40, 14, 1])[0]
            key = rng.randint(1, 200)
            if op == "insert":
                stats.timed("write", lambda k=key: conn.execute(
                    "INSERT INTO soak_docs VALUES (%s, %s) ON CONFLICT (id) DO UPDATE"
                    " SET body = excluded.body", (k, text(rng))))
            elif op == "update":
                stats.timed("write", lambda k=key: conn.execute(
                    "UPDATE soak_docs SET body = %s WHERE id = %s", (text(rng), k)))
            elif op == "delete":
                stats.timed("write", lambda k=key: conn.execute(
                    "DELETE FROM soak_docs WHERE id = %s", (k,)))
            else:
                stats.timed("write", lambda: conn.execute("TRUNCATE soak_docs"))


def answerer(url, seed, count, stats, stop):
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            if stop.is_set():
                return
            question = f"How do I fix {rng.choice(WORDS)} {rng.choice(WORDS)}?"
            row = stats.timed("answer", lambda q=question: conn.execute(
                "SELECT rag.answer(%s, pipeline => 'soak_docs', options => %s)",
                (q, json.dumps({"log": False}))).fetchone())
            # Degraded: found by keyword search only, the embedder being down (issue 33).
            outcome = ("failed" if row is None
                       else "degraded" if row[0].get("degraded") else "hybrid")
            with stats.lock:
                stats.answers[outcome] += 1


def worker(url, stats, stop):
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            stats.timed("process", lambda: conn.execute(
                "CALL rag.process_queue('soak_docs', batch_size => 16, max_seconds => 2,"
                " lease_seconds => 5)"))
            time.sleep(0.05)


def flaky(server: EmbeddingServer, stop, every: float, seed: int, timeout: float):
    rng = random.Random(seed)
    while not stop.wait(every):
        fault = rng.choice(FAULTS)
        server.fail_next({**fault, "delay": timeout + 1} if "delay" in fault else fault)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--answerers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writes", type=int, default=400, help="per writer")
    parser.add_argument("--answers", type=int, default=100, help="per answerer")
    parser.add_argument("--fault-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="the provider's timeout_seconds (raise it on a loaded machine)")
    parser.add_argument("--batch-inputs", type=int, default=16)
    args = parser.parse_args()
    url = database_url()
    os.environ.setdefault("PYTHONPATH", str(REPO / "python" / "src"))

    with server_process("openai_server.py", "embeddings") as port, \
            psycopg.connect(url, autocommit=True) as admin:
        server = EmbeddingServer(port)
        admin.execute("SELECT rag.drop_pipeline('soak_docs') FROM rag.pipelines"
                      " WHERE name = 'soak_docs'")
        admin.execute("DROP TABLE IF EXISTS soak_docs")
        admin.execute("DELETE FROM rag.embedders WHERE name = 'soak_srv'")
        admin.execute("SELECT rag.create_embedder('soak_srv', 'openai', 'all-MiniLM-L6-v2-int8',"
                      " 384, %s, options => %s)", (server.url, json.dumps(
                          {"timeout_seconds": args.timeout,
                           "max_batch_inputs": args.batch_inputs})))
        admin.execute("CREATE TABLE soak_docs (id integer PRIMARY KEY, body text)")
        admin.execute("SELECT rag.create_pipeline('soak_docs', 'soak_docs', 'body',"
                      " embedder => 'soak_srv', chunker => '{\"max_tokens\": 100}')")
        admin.execute("SELECT rag.alter_pipeline('soak_docs', retry_base_seconds => 0.5,"
                      " retry_max_seconds => 5, max_attempts => 20)")

        stats, stop, done = Stats(), threading.Event(), threading.Event()
        clients = ([threading.Thread(target=writer, args=(url, args.seed * 100 + i, args.writes,
                                                          stats, done))
                    for i in range(args.writers)]
                   + [threading.Thread(target=answerer, args=(url, args.seed * 200 + i,
                                                              args.answers, stats, done))
                      for i in range(args.answerers)])
        background = ([threading.Thread(target=worker, args=(url, stats, stop))
                       for _ in range(args.workers)]
                      + [threading.Thread(target=flaky, args=(server, stop, args.fault_every,
                                                              args.seed, args.timeout))])
        started = time.perf_counter()
        for thread in clients + background:
            thread.start()
        deadline = started + args.max_minutes * 60
        for thread in clients:
            thread.join(max(0.0, deadline - time.perf_counter()))
        done.set()
        stop.set()
        for thread in clients + background:
            thread.join(60)
        elapsed = time.perf_counter() - started

        server.fail_next()  # the provider recovers; everything queued is processed
        admin.execute("SELECT rag.retry_failed('soak_docs')")
        drain_started = time.perf_counter()
        while queued(admin, "soak_docs"):
            admin.execute("CALL rag.process_queue('soak_docs')")
            if time.perf_counter() - drain_started > 300:
                break
        found = problems(admin, "soak_docs", "soak_docs")
        rows, chunks = admin.execute("SELECT (SELECT count(*) FROM soak_docs),"
                                     " (SELECT count(*) FROM rag.soak_docs_chunks)").fetchone()

    print(f"soak: {args.writers} writers x {args.writes} writes, {args.answerers} answerers x "
          f"{args.answers} answers, {args.workers} workers, a provider fault every "
          f"{args.fault_every:g} s, timeout {args.timeout:g} s; {elapsed:.0f} s, then "
          f"{time.perf_counter() - drain_started:.0f} s to drain; load average "
          f"{os.getloadavg()[0]:.1f}")
    for kind, values in sorted(stats.latencies.items()):
        print(f"  {kind:8} {len(values):6} ok  {len(values) / elapsed:7.1f}/s  "
              f"p50 {statistics.median(values) * 1000:8.1f} ms  "
              f"p95 {percentile(values, 0.95) * 1000:8.1f} ms")
    print(f"  answers: {stats.answers['hybrid']} hybrid, {stats.answers['degraded']} "
          f"degraded to keyword search (the embedder down), {stats.answers['failed']} failed")
    print(f"  errors: {sum(stats.errors.values())}")
    for message, n in stats.errors.most_common(10):
        print(f"    {n:5} {message}")
    print(f"  final: {rows} rows, {chunks} chunks; consistency: "
          + ("OK" if not found else f"{len(found)} problems"))
    for problem in found[:20]:
        print(f"    {problem}")
    write_errors = sum(n for m, n in stats.errors.items() if m.startswith("write"))
    return 1 if found or write_errors else 0


if __name__ == "__main__":
    sys.exit(main())
