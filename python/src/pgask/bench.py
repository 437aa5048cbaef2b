"""`pgask bench` (`make bench`): speed figures, each next to a baseline measured in the same run.

- ingest: chunks/s embedded by rag.process_queue (chunking, embedding and writing inside
  PostgreSQL) vs the same model called directly from Python on the same chunk texts;
- write latency: a single-row INSERT into a table with an async pipeline vs the same INSERT
  into an identical table without one.

It works in a scratch database (pgask_bench) that it drops and recreates, on the PostgreSQL
manual pages `make setup` installs. Figures depend on the machine: compare ratios, and only
absolute numbers from the same machine.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
BENCH_DB = "pgask_bench"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        rows = [("figure", "pgask", "baseline", "ratio")]
        for f in self.figures:
            rows.append((f.name, f"{f.value:,.2f} {f.unit}",
                         f"{f.baseline:,.2f} {f.unit} ({f.baseline_name})", f"{f.ratio:.2f}x"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = [f"  {f.name}: {f.note}" for f in self.figures if f.note]
        return "\n".join(lines + (["", "notes:"] + notes if notes else []))

    def markdown(self, command: str) -> str:
        """BENCHMARKS.md: written by the benchmark itself, never by hand."""
        return (
            "# pgask benchmarks\n\n"
            "Written by `pgask bench`; do not edit the figures by hand, run it again.\n\n"
            f"- command: `{command}`\n- date: {self.settings['date']}\n"
            f"- machine: {self.settings['machine']}\n\n"
            "Each figure is measured next to its baseline in the same run; the ratio is "
            "pgask / baseline (for latencies, lower is better; for rates, higher).\n\n"
            "```\n" + self.table() + "\n```\n\n" + FIGURE_MEANINGS)

    def to_json(self) -> dict:
        return {"settings": self.settings, "figures": [
            {"name": f.name, "value": f.value, "unit": f.unit, "baseline_name": f.baseline_name,
             "baseline": f.baseline, "ratio": f.ratio, "note": f.note} for f in self.figures]}


FIGURE_MEANINGS = """What the figures mean:

- ingest (chunks/s): chunks embedded per second by `CALL rag.process_queue()` on an async
  pipeline over manual pages (chunking with the model's tokenizer, queue leases, reuse lookups,
  writes and the HNSW index update included) vs the same chunk texts embedded by the same
  model in the benchmark process. The target is >= 0.9x.
- INSERT p50/p95 (async pipeline): latency of a single-row autocommit INSERT into a table with
  an async pipeline (the statement trigger queues the row) vs an identical table without one.
  The baseline's commit is fast on this machine, so the fixed trigger cost weighs heavily in
  the ratio.
"""


def machine() -> str:
    import os
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.platform()}"


def scratch_database(url: str) -> str:
    """Recreates the benchmark database next to `url`'s and installs pgask in it."""
    from pgask.install import install

    params = conninfo_to_dict(url)
    admin = make_conninfo(**{**params, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    bench_url = make_conninfo(**{**params, "dbname": BENCH_DB})
    with psycopg.connect(bench_url, autocommit=True) as conn:
        install(conn)
    return bench_url


def manual_texts(pages: int) -> list[str]:
    from pgask.loaders import load_file

    paths = sorted(MANUAL.glob("sql-*.html"))[:pages]
    if not paths:
        raise SystemExit(f"no PostgreSQL manual under {MANUAL}: run make setup")
    return [load_file(p).content for p in paths]


def bench_ingest(conn: psycopg.Connection, texts: list[str]) -> Figure:
    from pgask.chunking import ChunkerConfig, chunk_document
    from pgask.embedders.local import MAX_INPUT_TOKENS, count_tokens, get_local_embedder

    conn.execute("CREATE TABLE bench_docs (id integer PRIMARY KEY, body text NOT NULL)")
    with conn.cursor().copy("COPY bench_docs (id, body) FROM STDIN") as copy:
        for i, text in enumerate(texts):
            copy.write_row((i, text))
    # Warm the backend's model so neither side pays the load.
    conn.execute("SELECT rag.embed('warm up')")
    conn.execute("SELECT rag.create_pipeline('bench', 'bench_docs', 'body')")
    started = time.perf_counter()
    conn.execute("CALL rag.process_queue('bench', batch_size => 16, max_seconds => 3600)")
    pipeline_seconds = time.perf_counter() - started
    (chunks,) = conn.execute("SELECT count(*) FROM rag.bench_chunks").fetchone()

    config = ChunkerConfig.from_dict({})
    inputs = [c.embed_text for text in texts for c in chunk_document(
        text, config, embed_limit=(count_tokens, MAX_INPUT_TOKENS))]
    embedder = get_local_embedder()
    embedder.embed(["warm up"])
    started = time.perf_counter()
    embedder.embed(inputs)
    direct_seconds = time.perf_counter() - started
    return Figure("ingest (chunks/s)", chunks / pipeline_seconds, "chunks/s",
                  "model called directly", len(inputs) / direct_seconds,
                  f"{chunks} chunks from {len(texts)} manual pages; pipeline time includes "
                  "chunking, queue and writes")


def _insert_latencies(conn: psycopg.Connection, table: str, rounds: int, start: int
                      ) -> list[float]:
    latencies = []
    for i in range(start, start + rounds):
        began = time.perf_counter()
        conn.execute(f"INSERT INTO {table} (id, body) VALUES (%s, %s)",
                     (i, f"Ticket {i}: the disk on host {i} is full"))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def bench_write_latency(conn: psycopg.Connection, rounds: int) -> list[Figure]:
    for table in ("plain_writes", "piped_writes"):
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline('piped', 'piped_writes', 'body')")
    plain: list[float] = []
    piped: list[float] = []
    # Alternate short runs so both tables see the same machine state.
    for block in range(10):
        start = block * rounds
        plain += _insert_latencies(conn, "plain_writes", rounds // 10, start)
        piped += _insert_latencies(conn, "piped_writes", rounds // 10, start)
    note = (f"{len(piped)} autocommit single-row INSERTs each; the trigger only enqueues "
            "(async mode)")
    return [
        Figure("INSERT p50 (async pipeline)", statistics.median(piped), "ms",
               "same INSERT, no pipeline", statistics.median(plain), note),
        Figure("INSERT p95 (async pipeline)", _p95(piped), "ms", "same INSERT, no pipeline",
               _p95(plain)),
    ]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run(url: str, pages: int, write_rounds: int) -> Report:
    report = Report(settings={"pages": pages, "write_rounds": write_rounds,
                              "date": time.strftime("%Y-%m-%d"), "machine": machine()})
    bench_url = scratch_database(url)
    # No server-side prepared statements: a cached plan would keep the planner settings
    # it was made under.
    with psycopg.connect(bench_url, autocommit=True, prepare_threshold=None) as conn:
        report.figures.append(bench_ingest(conn, manual_texts(pages)))
        report.figures.extend(bench_write_latency(conn, write_rounds))
    return report


def add_bench_parser(sub, connect_url) -> None:
    bench = sub.add_parser("bench", help="measure speed against baselines (make bench)",
                           description="Runs each measurement next to its baseline in a "
                           "scratch database pgask_bench (dropped and recreated) and prints a "
                           "table of ratios.")
    bench.add_argument("--pages", type=int, default=40,
                       help="manual pages for the ingest figure (default 40)")
    bench.add_argument("--write-rounds", type=int, default=1000,
                       help="INSERTs per table for the write latency figure (default 1000)")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--markdown", metavar="FILE",
                       help="also write the table, command, machine and date (BENCHMARKS.md)")

    def command(args) -> int:
        report = run(connect_url(args), args.pages, args.write_rounds)
        print(report.table())
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n")
        if args.markdown:
            command = "pgask bench " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in (
                ("pages", args.pages), ("write_rounds", args.write_rounds)))
            Path(args.markdown).write_text(report.markdown(command))
        return 0

    bench.set_defaults(func=command)
