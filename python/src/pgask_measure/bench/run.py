"""`pgask bench`: every measurement in order, and the command's arguments."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pgask_measure.bench.answer import bench_answer
from pgask_measure.bench.common import (
    SCALES,
    SENTENCE_SCALES,
    K,
    connect,
    embed_literals,
    machine,
    manual_pages,
    scratch_database,
)
from pgask_measure.bench.copyload import COPY_ROUNDS, COPY_ROWS, bench_copy
from pgask_measure.bench.fleet import bench_fleet_local, bench_fleet_remote
from pgask_measure.bench.ingest import bench_ingest, bench_write_latency
from pgask_measure.bench.langchain import (
    bench_langchain,
    langchain_ingest,
    langchain_missing,
    langchain_versions,
)
from pgask_measure.bench.memory import BASELINE_CONNECTIONS, CONNECTIONS, bench_memory
from pgask_measure.bench.report import Report, questions, size_label
from pgask_measure.bench.scale import bench_scale
from pgask_measure.bench.stores import bench_sentences

GROUPS = ("ingest", "writes", "copy", "fleet", "scale", "sentences", "answer", "memory",
          "langchain")


def run(url: str, pages: int, write_rounds: int, queries: int = 200, answers: int = 40,
        scale: str = "default", sizes: Sequence[int] | None = None,
        sentences: Sequence[int] | None = None, only: Sequence[str] = GROUPS,
        memory_connections: int = CONNECTIONS,
        memory_baseline_connections: int = BASELINE_CONNECTIONS) -> Report:
    sizes = tuple(sizes or SCALES[scale])
    sentences = tuple(sentences or SENTENCE_SCALES[scale])
    started = time.perf_counter()
    report = Report(settings={
        "pages": pages, "write_rounds": write_rounds, "queries": queries, "answers": answers,
        "scale": scale, "sizes": list(sizes), "sentences": list(sentences), "k": K,
        "copy_rows": COPY_ROWS, "copy_rounds": COPY_ROUNDS,
        "memory_connections": memory_connections,
        "memory_baseline_connections": memory_baseline_connections,
        "only": list(only), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(), "load_start": os.getloadavg()[0]})
    missing = langchain_missing() if {"langchain", "ingest"} <= set(only) else None
    if missing:
        print(missing, flush=True)
        report.skipped.append(missing)
    bench_url = scratch_database(url)
    docs = manual_pages(pages)
    asked = questions([d.title for d in docs], max(queries, answers))
    texts = asked[:queries]
    # Table order: ingest, writes and bulk load, fleets, search, recall, answer, LangChain.
    searches, recalls, rest = [], [], []
    with connect(bench_url) as conn:
        if "ingest" in only:
            ingest, inputs = step("ingest", lambda: bench_ingest(conn, [d.content
                                                                        for d in docs]))
            report.figures.append(ingest)
            if not missing and "langchain" in only:
                # Right after pgask's ingest, so both rates see the same machine state.
                store, rate = step("LangChain ingest",
                                   lambda: langchain_ingest(bench_url, inputs))
        if "writes" in only:
            report.figures += step("write latency",
                                   lambda: bench_write_latency(conn, write_rounds))
        if "copy" in only:
            report.figures.append(step("bulk load (COPY)", lambda: bench_copy(conn)))
        if "fleet" in only:
            report.figures += step("worker fleet, slow provider",
                                   lambda: bench_fleet_remote(bench_url, conn))
            report.figures += step("worker fleet, local model", lambda: bench_fleet_local(
                bench_url, conn, [d.content for d in docs[:max(4, pages // 4)]]))
        if "scale" in only:
            searches += step(f"scale stores {', '.join(map(size_label, sizes))}",
                             lambda: bench_scale(bench_url, conn, sizes,
                                                 [d.title for d in docs], queries))
        if "sentences" in only:
            literals = embed_literals(texts)
            for n in sentences:
                search, recall = step(f"{size_label(n)} manual sentences", lambda n=n:
                                      bench_sentences(bench_url, conn, n, texts, literals))
                searches += search
                recalls += recall
        if "answer" in only:
            rest += step("answers",
                         lambda: bench_answer(bench_url, conn, docs, asked[:answers]))
        if "memory" in only:
            from pgask_measure.bench.memory import readable

            unreadable = readable(conn)
            if unreadable:
                print(unreadable, flush=True)
                report.skipped.append(unreadable)
            else:
                rest += step("memory per connection", lambda: bench_memory(
                    bench_url, conn, docs, asked, memory_connections,
                    memory_baseline_connections))
        if not missing and {"langchain", "ingest"} <= set(only):
            report.settings["langchain"] = langchain_versions()
            rest += step("LangChain search", lambda: bench_langchain(
                bench_url, store, rate, ingest, inputs, texts))
    report.figures += searches + recalls + rest
    report.settings["load_end"] = os.getloadavg()[0]
    report.settings["seconds"] = round(time.perf_counter() - started)
    return report


def step(name: str, measure: Callable):
    """Runs one measurement, printing its name and how long it took; returns its result."""
    print(f"bench: {name} ...", flush=True)
    began = time.perf_counter()
    result = measure()
    print(f"bench: {name} done in {time.perf_counter() - began:.0f} s", flush=True)
    return result


def add_bench_parser(sub, connect_url) -> None:
    bench = sub.add_parser("bench", help="measure speed against baselines (make bench)",
                           description="Runs each measurement next to its baseline in a "
                           "scratch database pgask_bench (dropped and recreated) and prints a "
                           "table of ratios.")
    bench.add_argument("--pages", type=int, default=40,
                       help="manual pages for the ingest, answer and LangChain figures "
                       "(default 40)")
    bench.add_argument("--write-rounds", type=int, default=1000,
                       help="INSERTs per table for the write latency figure (default 1000)")
    bench.add_argument("--queries", type=int, default=200,
                       help="distinct query texts per search figure (default 200)")
    bench.add_argument("--answers", type=int, default=40,
                       help="questions for the answer latency figure (default 40)")
    bench.add_argument("--scale", choices=sorted(SCALES), default="default",
                       help="store sizes: default 10k and 100k chunks of real text (the "
                       "manual and SciFact, stand-in vectors) and 10k real sentence "
                       "embeddings; large adds 1M chunks and 60k sentences (much longer)")
    bench.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                       help="real-text store sizes instead of --scale's, e.g. 2000,10000")
    bench.add_argument("--only", type=lambda s: s.split(","), default=list(GROUPS),
                       help=f"measurements to run, comma-separated (default all: "
                       f"{','.join(GROUPS)})")
    bench.add_argument("--sentences", type=lambda s: [int(x) for x in s.split(",")],
                       help="manual sentences for the real-embedding recall instead of "
                       "--scale's, e.g. 2000")
    bench.add_argument("--memory-connections", type=int, default=CONNECTIONS,
                       help=f"connections that search and answer together, on the shared "
                       f"model process (default {CONNECTIONS})")
    bench.add_argument("--memory-baseline-connections", type=int,
                       default=BASELINE_CONNECTIONS,
                       help="the same with a model in each backend (~200 MB each; default "
                       f"{BASELINE_CONNECTIONS})")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--markdown", metavar="FILE",
                       help="also write the table, command, machine and date (BENCHMARKS.md)")

    def command(args) -> int:
        report = run(connect_url(args), args.pages, args.write_rounds, args.queries,
                     args.answers, args.scale, args.sizes, args.sentences, args.only,
                     args.memory_connections, args.memory_baseline_connections)
        print(report.table())
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n")
        if args.markdown:
            options = [("pages", args.pages), ("write-rounds", args.write_rounds),
                       ("queries", args.queries), ("answers", args.answers),
                       ("scale", args.scale)]
            for name, values in (("sizes", args.sizes), ("sentences", args.sentences),
                                 ("only", args.only if args.only != list(GROUPS) else None)):
                if values:
                    options.append((name, ",".join(map(str, values))))
            command = "pgask bench " + " ".join(f"--{k} {v}" for k, v in options)
            if os.environ.get("MAKELEVEL"):  # set by make for the commands it runs
                command = f"make bench` (BENCH_SCALE={args.scale}), which runs `{command}"
            Path(args.markdown).write_text(report.markdown(command))
        return 0

    bench.set_defaults(func=command)
