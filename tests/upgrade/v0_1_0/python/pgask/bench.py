"""`pgask bench` (`make bench`): speed figures, each next to a baseline measured in the same run.

- ingest: chunks/s embedded by rag.process_queue (chunking, embedding and writing inside
  PostgreSQL) vs the same model called directly from Python on the same chunk texts;
- write latency: a single-row INSERT into a table with an async pipeline vs the same INSERT
  into an identical table without one;
- query: rag.search latency vs a hand-written pgvector query, on chunk stores of 10k and 100k
  synthetic vectors (1M too with --scale large);
- recall@10 of the HNSW index vs an exact scan, on the synthetic stores and on real embeddings;
- answer: rag_answer latency and its phases (embed, search, extractive step);
- LangChain: ingest and query through langchain-postgres' PGVector over the same database,
  model and chunks (when langchain-postgres is installed: `make bench` installs it in its own
  environment, .venv-bench).

It works in a scratch database (pgask_bench) that it drops and recreates, on the PostgreSQL
manual pages `make setup` installs. Figures depend on the machine: compare ratios, and only
absolute numbers from the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
BENCH_DB = "pgask_bench"
DIMENSIONS = 384
# Neighbours per query for the query and recall figures (recall@K).
K = 10
# pgvector's default hnsw.ef_search, and a setting that trades speed for recall.
EF_SEARCHES = (40, 100)
SCALES = {"default": (10_000, 100_000), "large": (10_000, 100_000, 1_000_000)}
# Real embeddings for recall: sentences of the manual (short, so thousands embed in about a
# minute, where as many chunks would take ten). The manual has about 60k distinct ones.
SENTENCE_SCALES = {"default": (10_000,), "large": (10_000, 60_000)}
RECALL_QUERIES = 100
QUESTION_TEMPLATES = (
    "What does {} do?",
    "How do I use {}?",
    "What is the syntax of {}?",
    "Which options does {} accept?",
    "What privileges does {} need?",
)


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
    skipped: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [("figure", "pgask", "baseline", "ratio")]
        for f in self.figures:
            rows.append((f.name, _amount(f.value, f.unit),
                         f"{_amount(f.baseline, f.unit)} ({f.baseline_name})", f"{f.ratio:.2f}x"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = [f"  {f.name}: {f.note}" for f in self.figures if f.note]
        notes += [f"  skipped: {reason}" for reason in self.skipped]
        return "\n".join(lines + (["", "notes:"] + notes if notes else []))

    def markdown(self, command: str) -> str:
        """BENCHMARKS.md: written by the benchmark itself, never by hand."""
        return (
            "# pgask benchmarks\n\n"
            "Written by `pgask bench`; do not edit the figures by hand, run it again.\n\n"
            f"- command: `{command}`\n- date: {self.settings['date']}\n"
            f"- machine: {self.settings['machine']}\n"
            f"- load average (1 min) at start / end: {self.settings['load_start']:.2f} / "
            f"{self.settings.get('load_end', float('nan')):.2f}\n"
            f"- run time: {self.settings.get('seconds', 0) / 60:.1f} min\n\n"
            "Each figure is measured next to its baseline in the same run; the ratio is "
            "pgask / baseline (for latencies, lower is better; for rates and recall, "
            "higher).\n\n"
            "```\n" + self.table() + "\n```\n\n" + FIGURE_MEANINGS)

    def to_json(self) -> dict:
        return {"settings": self.settings, "skipped": self.skipped, "figures": [
            {"name": f.name, "value": f.value, "unit": f.unit, "baseline_name": f.baseline_name,
             "baseline": f.baseline, "ratio": f.ratio, "note": f.note} for f in self.figures]}


def _amount(value: float, unit: str) -> str:
    return f"{value:,.2f} {unit}" if unit else f"{value:,.2f}"


FIGURE_MEANINGS = """What the figures mean:

- ingest (chunks/s): chunks embedded per second by `CALL rag.process_queue()` on an async
  pipeline over manual pages (chunking with the model's tokenizer, queue leases, reuse lookups,
  writes and the HNSW index update included) vs the same chunk texts embedded by the same
  model in the benchmark process. The target is >= 0.9x.
- INSERT p50/p95 (async pipeline): latency of a single-row autocommit INSERT into a table with
  an async pipeline (the statement trigger queues the row) vs an identical table without one.
  The baseline's commit is fast on this machine, so the fixed trigger cost weighs heavily in
  the ratio.
- search, new text: `SELECT * FROM rag.search(q, 10, mode => 'vector', pipeline => ...)`
  with a query text this database connection has not seen, so the model embeds it inside
  PostgreSQL, vs what an application does without pgask: embed the same text with the same
  model in its own process, then run
  `SELECT ... FROM rag.<pipeline>_chunks ORDER BY embedding <=> $1 LIMIT 10`. The stores
  hold random unit vectors (synthetic: at a given ef_search the index does about the same
  work on any data of that size); the query vectors are real embeddings of
  manual-style questions. Latency seen by the client, round trip included.
- search, cached text: the same rag.search calls again: the query vector now comes from the
  per-connection cache of recent query texts, so this is rag.search's own cost (pipeline
  lookup, dynamic SQL, index scan) vs the hand-written query given the precomputed vector,
  the floor.
- recall@10: the share of the exact 10 nearest neighbours (a sequential scan, `SET
  enable_indexscan = off`) that the HNSW index returns, at `hnsw.ef_search` 40 (pgvector's
  default, what rag.search uses) and 100, over 100 queries (synthetic stores: random unit
  query vectors) or the question texts (sentences). Uniformly random vectors in 384
  dimensions are the worst case for HNSW (every point is almost equally far from every other),
  so the synthetic rows are very pessimistic; the "manual sentences" rows use real embeddings
  (distinct sentences sampled from the whole PostgreSQL manual, embedded by the same model)
  and are what to expect from real text.
- answer: `SELECT rag_answer(q)` for questions about the ingested manual pages, each new to
  its connection, vs retrieval alone (embed + search). Phases, measured on the same questions
  in a second connection: embed = `rag.embed(q, 'local')`; search = `rag.search(q, 5)` once that
  embedding is cached; extractive step = `rag.answer(q, 5)` with the embedding cached, minus
  search: answers are extractive (no LLM), so this is where "generate" would be. Phase ratios
  are shares of the whole rag_answer p50.
- vs LangChain: the same chunk texts and the same model (pgask's local embedder wrapped as a
  LangChain `Embeddings`) through langchain-postgres' `PGVector` store in the same database, as
  its documentation sets it up (no index on its table: exact search). Ingest = pgask's
  process_queue rate from the ingest row vs `PGVector.add_texts` (LangChain gets the chunks
  ready-made, so its time leaves out chunking). Search = rag.search vs
  `PGVector.similarity_search`, k = 10, query texts new to both (LangChain embeds every query
  in the client; pgask in the database).
"""


# ---------------------------------------------------------------------------------------------
# Pure helpers (tests/test_bench.py)

def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of values, interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100, got {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def recall_at_k(found: Sequence[float], exact: Sequence[float], k: int,
                tolerance: float = 1e-6) -> float:
    """Recall@k of one query from distances: found = the index's results, exact = the true
    nearest, both ascending. A found row counts when it is as close as the k-th true neighbour,
    so rows tied at the same distance (duplicate chunks) are not counted as misses."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    wanted = min(k, len(exact))
    if wanted == 0:
        return 1.0
    kth = exact[wanted - 1]
    return sum(1 for d in found[:k] if d <= kth + tolerance) / wanted


def questions(titles: Sequence[str], n: int) -> list[str]:
    """Up to n distinct questions about the titles: every title once before any twice."""
    seen = dict.fromkeys(t.format(title) for t in QUESTION_TEMPLATES for title in titles)
    return list(seen)[:n]


def size_label(n: int) -> str:
    """10000 -> '10k', 1000000 -> '1M', 2500 -> '2.5k'."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def random_unit_vectors(rng: np.random.Generator, n: int, dims: int = DIMENSIONS
                        ) -> np.ndarray:
    """n random directions in dims dimensions, L2-normalised like the model's output."""
    vectors = rng.standard_normal((n, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def latency_figures(name: str, values: Sequence[float], baseline_name: str,
                    baseline: Sequence[float], note: str = "") -> list[Figure]:
    """p50 and p95 rows for one latency and its baseline (the note goes on the first)."""
    return [
        Figure(f"{name} p50", statistics.median(values), "ms", baseline_name,
               statistics.median(baseline), note),
        Figure(f"{name} p95", percentile(values, 95), "ms", baseline_name,
               percentile(baseline, 95)),
    ]


# ---------------------------------------------------------------------------------------------
# Database plumbing

def machine() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.platform()}"


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection without server-side prepared statements: a cached plan would
    keep the planner settings (ef_search, enable_*) it was made under."""
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


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


def warm_backend(conn: psycopg.Connection) -> None:
    """Loads the model in this connection's backend (~0.5 s, once per backend), so that no
    figure pays it; 'warm up' is never one of the measured texts."""
    conn.execute("SELECT rag.embed('warm up', 'local'), rag.embed('warm up')")


def timed_ms(conn: psycopg.Connection, sql: str, params: Sequence | dict = ()) -> float:
    """Milliseconds to run a query and fetch all its rows."""
    began = time.perf_counter()
    conn.execute(sql, params).fetchall()
    return (time.perf_counter() - began) * 1000


def plan_of(conn: psycopg.Connection, sql: str, params: Sequence | dict = ()) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))


def store_of(conn: psycopg.Connection, pipeline: str) -> str:
    """The chunk table (rag.<pipeline>_chunks_<set>) behind a pipeline's view."""
    (store,) = conn.execute("SELECT rag._store(name, active_set) FROM rag.pipelines"
                            " WHERE name = %s", (pipeline,)).fetchone()
    return store


def manual_pages(pages: int) -> list:
    """The first `pages` pages of the SQL command reference, loaded as pgask ingests them."""
    from pgask.loaders import load_file

    paths = sorted(MANUAL.glob("sql-*.html"))[:pages]
    if not paths:
        raise SystemExit(f"no PostgreSQL manual under {MANUAL}: run make setup")
    return [load_file(p) for p in paths]


def chunk_inputs(texts: Sequence[str]) -> list[str]:
    """The texts a pipeline without a title column embeds for these documents."""
    from pgask.chunking import ChunkerConfig, chunk_document
    from pgask.embedders.local import MAX_INPUT_TOKENS, count_tokens

    config = ChunkerConfig.from_dict({})
    return [c.embed_text for text in texts for c in chunk_document(
        text, config, embed_limit=(count_tokens, MAX_INPUT_TOKENS))]


def embed_literals(texts: Sequence[str]) -> list[str]:
    """Each text embedded by the model in this process, as a pgvector literal."""
    from pgask.embedders import vector_literal
    from pgask.embedders.local import get_local_embedder

    return [vector_literal(v) for v in get_local_embedder().embed(list(texts))]


# ---------------------------------------------------------------------------------------------
# ingest and write latency

def bench_ingest(conn: psycopg.Connection, texts: list[str]) -> tuple[Figure, list[str]]:
    """The ingest figure, and the chunk texts it embedded (for the LangChain comparison)."""
    from pgask.embedders.local import get_local_embedder

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

    inputs = chunk_inputs(texts)
    embedder = get_local_embedder()
    embedder.embed(["warm up"])
    started = time.perf_counter()
    embedder.embed(inputs)
    direct_seconds = time.perf_counter() - started
    figure = Figure("ingest (chunks/s)", chunks / pipeline_seconds, "chunks/s",
                    "model called directly", len(inputs) / direct_seconds,
                    f"{chunks} chunks from {len(texts)} manual pages; pipeline time includes "
                    "chunking, queue and writes")
    return figure, inputs


def _insert_ms(conn: psycopg.Connection, table: str, i: int) -> float:
    began = time.perf_counter()
    conn.execute(f"INSERT INTO {table} (id, body) VALUES (%s, %s)",
                 (i, f"Ticket {i}: the disk on host {i} is full"))
    return (time.perf_counter() - began) * 1000


def bench_write_latency(conn: psycopg.Connection, rounds: int) -> list[Figure]:
    for table in ("plain_writes", "piped_writes"):
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline('piped', 'piped_writes', 'body')")
    plain: list[float] = []
    piped: list[float] = []
    # Alternate INSERT by INSERT so both tables see the same machine state (commit flush
    # times here come in bursts that blocks of INSERTs can land on unevenly).
    for i in range(rounds):
        plain.append(_insert_ms(conn, "plain_writes", i))
        piped.append(_insert_ms(conn, "piped_writes", i))
    note = (f"{len(piped)} autocommit single-row INSERTs each; the trigger only enqueues "
            "(async mode)")
    return latency_figures("INSERT (async pipeline)", piped, "same INSERT, no pipeline", plain,
                           note)


# ---------------------------------------------------------------------------------------------
# query latency: rag.search vs a hand-written pgvector query

def floor_query(pipeline: str) -> str:
    """The hand-written query an application runs with a vector it computed itself."""
    return (f"SELECT id, document_id, title, content, metadata,"
            f" 1 - (embedding <=> %(v)s::vector) AS score FROM rag.{pipeline}_chunks"
            f" ORDER BY embedding <=> %(v)s::vector LIMIT {K}")


def search_latencies(url: str, pipeline: str, texts: Sequence[str]) -> dict[str, list[float]]:
    """rag.search and the floor query on the same texts, interleaved query by query so both
    see the same machine state. One fresh connection: every text is new to its backend on
    the first pass and cached on the second. The baseline embeds each text here, timed."""
    from pgask.embedders import vector_literal
    from pgask.embedders.local import get_local_embedder

    embedder = get_local_embedder()
    search = f"SELECT * FROM rag.search(%s, {K}, mode => 'vector', pipeline => '{pipeline}')"
    floor = floor_query(pipeline)
    out: dict[str, list[float]] = {"new": [], "client": [], "cached": [], "floor": []}
    literals = []
    with connect(url) as conn:
        warm_backend(conn)
        embedder.embed(["warm up"])
        for text in texts:
            out["new"].append(timed_ms(conn, search, (text,)))
            began = time.perf_counter()
            vector = embedder.embed([text])[0]
            embed_ms = (time.perf_counter() - began) * 1000
            literals.append(vector_literal(vector))
            out["client"].append(embed_ms + timed_ms(conn, floor, {"v": literals[-1]}))
        for text, literal in zip(texts, literals, strict=True):
            out["cached"].append(timed_ms(conn, search, (text,)))
            out["floor"].append(timed_ms(conn, floor, {"v": literal}))
    return out


def uses_index(conn: psycopg.Connection, pipeline: str) -> bool:
    """Whether the planner takes the HNSW index for a k-nearest query on this pipeline."""
    vector = "[" + ",".join(["0.05"] * DIMENSIONS) + "]"
    return "hnsw" in plan_of(conn, floor_query(pipeline), {"v": vector})


def search_figures(label: str, times: dict[str, list[float]], note: str) -> list[Figure]:
    return (
        latency_figures(f"search {label}, new text", times["new"],
                        "same model in client + pgvector query", times["client"], note)
        + latency_figures(f"search {label}, cached text", times["cached"],
                          "pgvector query, vector given", times["floor"]))


# ---------------------------------------------------------------------------------------------
# recall@10 of the HNSW index vs an exact scan

def nearest_distances(conn: psycopg.Connection, pipeline: str, literal: str
                      ) -> list[float]:
    return [d for (d,) in conn.execute(
        f"SELECT embedding <=> %(v)s::vector AS d FROM rag.{pipeline}_chunks"
        f" ORDER BY embedding <=> %(v)s::vector LIMIT {K}", {"v": literal})]


def _distances_under(conn: psycopg.Connection, pipeline: str, literals: Sequence[str],
                     settings: dict[str, str], expect: str
                     ) -> tuple[list[list[float]], list[float]]:
    """Each query's K nearest distances and latencies, under planner settings for this
    connection only; checks the plan is the intended one (`expect` in EXPLAIN)."""
    for name, value in settings.items():
        conn.execute(f"SET {name} = {value}")
    try:
        plan = plan_of(conn, f"SELECT 1 FROM rag.{pipeline}_chunks ORDER BY embedding <=>"
                             " %(v)s::vector LIMIT 10", {"v": literals[0]})
        if expect not in plan:
            raise RuntimeError(f"expected {expect!r} in the plan on {pipeline}:\n{plan}")
        results, times = [], []
        for literal in literals:
            began = time.perf_counter()
            results.append(nearest_distances(conn, pipeline, literal))
            times.append((time.perf_counter() - began) * 1000)
        return results, times
    finally:
        for name in settings:
            conn.execute(f"RESET {name}")


def recall_figures(url: str, pipeline: str, label: str, literals: Sequence[str], note: str
                   ) -> list[Figure]:
    """recall@K at each ef_search vs an exact scan; the note gives both latencies."""
    with connect(url) as conn:
        exact, exact_ms = _distances_under(conn, pipeline, literals,
                                           {"enable_indexscan": "off"}, "Seq Scan")
        figures = []
        for ef in EF_SEARCHES:
            found, found_ms = _distances_under(
                conn, pipeline, literals, {"enable_seqscan": "off", "hnsw.ef_search": str(ef)},
                "hnsw")
            recall = statistics.mean(recall_at_k(f, e, K)
                                     for f, e in zip(found, exact, strict=True))
            figures.append(Figure(
                f"recall@{K} {label}, ef_search {ef}", recall, "", "exact scan", 1.0,
                f"{note}; {len(literals)} queries; query p50 {statistics.median(found_ms):.2f}"
                f" ms with the index vs {statistics.median(exact_ms):.2f} ms exact"))
    return figures


# ---------------------------------------------------------------------------------------------
# Chunk stores filled by the benchmark itself: synthetic vectors, or real sentence embeddings

def create_store(conn: psycopg.Connection, pipeline: str) -> str:
    """A pipeline over an empty table, so rag.search works on it; returns its chunk table,
    which the caller fills directly."""
    conn.execute(f"CREATE TABLE {pipeline}_docs (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline(%s, %s, 'body')", (pipeline, f"{pipeline}_docs"))
    return store_of(conn, pipeline)


def _copy_rows(url: str, store: str, batches: Iterator[tuple[list[str], np.ndarray]]) -> int:
    """Binary COPY of (content, vector) batches into a chunk table; returns the row count."""
    from pgvector.psycopg import register_vector

    n = 0
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            f"COPY rag.{store} (document_id, ordinal, content, token_count, char_start,"
            " char_end, embed_hash, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "int4", "text", "int4", "int4", "int4", "bytea", "vector"])
            for contents, vectors in batches:
                for content, vector in zip(contents, vectors, strict=True):
                    # Ten chunks per pretend document keeps (document_id, ordinal) unique.
                    copy.write_row((str(n // 10), n % 10 + 1, content, 1, 0, 0,
                                    n.to_bytes(8, "big"), vector))
                    n += 1
    return n


def fill_store(url: str, conn: psycopg.Connection, store: str,
               batches: Iterator[tuple[list[str], np.ndarray]]) -> tuple[int, float]:
    """Loads the rows with the HNSW index dropped, then rebuilds it with pgask's own
    definition (a bulk build is much faster than one insert at a time); returns the row count
    and the build's seconds."""
    (indexdef,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'rag'"
                               " AND indexname = %s", (f"{store}_hnsw",)).fetchone()
    conn.execute(f'DROP INDEX rag."{store}_hnsw"')
    rows = _copy_rows(url, store, batches)
    # The graph must fit in maintenance_work_mem or the build slows down many times over.
    conn.execute(f"SET maintenance_work_mem = '{max(256, rows * 4 // 1000)}MB'")
    began = time.perf_counter()
    conn.execute(indexdef)
    build_seconds = time.perf_counter() - began
    conn.execute("RESET maintenance_work_mem")
    conn.execute(f"VACUUM ANALYZE rag.{store}")
    return rows, build_seconds


def synthetic_batches(rows: int, seed: int, batch: int = 50_000
                      ) -> Iterator[tuple[list[str], np.ndarray]]:
    rng = np.random.default_rng(seed)
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        yield [f"synthetic chunk {start + i}" for i in range(n)], random_unit_vectors(rng, n)


def bench_synthetic(url: str, conn: psycopg.Connection, rows: int, texts: Sequence[str]
                    ) -> tuple[list[Figure], list[Figure]]:
    """Query latency figures and recall figures on a store of `rows` random unit vectors."""
    from pgask.embedders import vector_literal

    label = size_label(rows)
    pipeline = f"synth_{label.replace('.', '_').lower()}"
    store = create_store(conn, pipeline)
    began = time.perf_counter()
    _, build_seconds = fill_store(url, conn, store, synthetic_batches(rows, seed=rows))
    print(f"  {label} synthetic vectors loaded in {time.perf_counter() - began:.0f} s "
          f"(HNSW build {build_seconds:.0f} s)", flush=True)
    times = search_latencies(url, pipeline, texts)
    note = (f"{rows:,} random unit vectors (synthetic) in a pipeline's chunk store, HNSW "
            f"m=16 ef_construction=64 (built in {build_seconds:.0f} s), ef_search 40; "
            f"{len(texts)} distinct question texts, k={K}")
    if not uses_index(conn, pipeline):
        note += "; at this size the planner prefers a sequential scan to the index"
    queries = random_unit_vectors(np.random.default_rng(rows + 1), RECALL_QUERIES)
    return search_figures(label, times, note), recall_figures(
        url, pipeline, label, [vector_literal(q) for q in queries],
        f"{rows:,} random unit vectors, random unit query vectors")


def manual_sentences(n: int, seed: int = 0) -> list[str]:
    """n distinct sentences of 5 to 60 words, sampled from every page of the manual."""
    import random

    from pgask.chunking import split_sentences
    from pgask.loaders import load_file

    seen: dict[str, None] = {}
    for path in sorted(MANUAL.glob("*.html")):
        content = load_file(path).content
        for start, end in split_sentences(content):
            sentence = " ".join(content[start:end].split())
            if 5 <= len(sentence.split()) <= 60:
                seen.setdefault(sentence)
    sentences = list(seen)
    return random.Random(seed).sample(sentences, min(n, len(sentences)))


def embedded_batches(texts: Sequence[str], batch: int = 512
                     ) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, embeddings) batches from the model in this process."""
    from pgask.embedders.local import get_local_embedder

    embedder = get_local_embedder()
    for start in range(0, len(texts), batch):
        part = list(texts[start:start + batch])
        yield part, embedder.embed(part)


def bench_sentences(url: str, conn: psycopg.Connection, n: int, literals: Sequence[str]
                    ) -> list[Figure]:
    """Recall on real embeddings: n sentences of the manual, questions as queries."""
    sentences = manual_sentences(n)
    label = size_label(len(sentences))
    pipeline = f"sentences_{label.replace('.', '_').lower()}"
    store = create_store(conn, pipeline)
    began = time.perf_counter()
    rows, build_seconds = fill_store(url, conn, store, embedded_batches(sentences))
    print(f"  {label} manual sentences embedded and loaded in "
          f"{time.perf_counter() - began:.0f} s (HNSW build {build_seconds:.0f} s)", flush=True)
    return recall_figures(url, pipeline, f"{label} manual sentences", literals,
                          f"real embeddings of {rows:,} distinct sentences sampled from the "
                          "whole manual, the question texts' embeddings as queries")


# ---------------------------------------------------------------------------------------------
# answer latency and its phases

def load_documents(conn: psycopg.Connection, pages: list) -> None:
    """The pages into rag.documents (sync pipeline: embedded by the INSERTs), for rag.answer."""
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO rag.documents (source, title, content) VALUES (%s, %s, %s)",
                        [(p.source, p.title, p.content) for p in pages])


def _retrieved_sentences(conn: psycopg.Connection, result: dict) -> int:
    """How many sentences the chunks an answer retrieved hold (what its extractive step
    embeds, before dropping very short and repeated ones)."""
    from pgask.chunking import split_sentences

    ids = [r["chunk_id"] for r in result["retrieved"]]
    rows = conn.execute("SELECT content FROM rag.documents_chunks WHERE id = ANY(%s)", (ids,))
    return sum(len(split_sentences(content)) for (content,) in rows)


def bench_answer(url: str, conn: psycopg.Connection, pages: list, asked: Sequence[str]
                 ) -> list[Figure]:
    """rag_answer end to end in one connection; its phases on the same questions in another,
    so every question is new to each backend's query caches."""
    load_documents(conn, pages)
    total, embed, search, step, modes, sentences = [], [], [], [], [], []
    with connect(url) as whole, connect(url) as parts:
        for conn in (whole, parts):
            warm_backend(conn)
            conn.execute("SELECT rag_answer('warm up')")
        for q in asked:
            total.append(timed_ms(whole, "SELECT rag_answer(%s)", (q,)))
            embed.append(timed_ms(parts, "SELECT rag.embed(%s, 'local')", (q,)))
            search.append(timed_ms(parts, "SELECT * FROM rag.search(%s, 5)", (q,)))
            began = time.perf_counter()
            (result,) = parts.execute("SELECT rag.answer(%s, 5)", (q,)).fetchone()
            step.append((time.perf_counter() - began) * 1000 - search[-1])
            modes.append(result["mode"])
            sentences.append(_retrieved_sentences(parts, result))
    retrieval = [e + s for e, s in zip(embed, search, strict=True)]
    whole_p50 = statistics.median(total)
    note = (f"{len(asked)} questions about the ingested pages, each new to its connection; "
            f"{modes.count('extractive')} answered, {modes.count('no_answer')} 'I don't know'")
    share = "rag_answer p50, the whole"
    return latency_figures("answer (rag_answer)", total, "embed + search only", retrieval,
                           note) + [
        Figure("answer phase: embed p50", statistics.median(embed), "ms", share, whole_p50,
               "rag.embed(q, 'local'), the query embedding rag.search makes"),
        Figure("answer phase: search p50", statistics.median(search), "ms", share, whole_p50,
               "rag.search(q, 5) with the query embedding cached"),
        Figure("answer phase: extractive step p50", statistics.median(step), "ms", share,
               whole_p50, "rag.answer(q, 5) with the embedding cached, minus search; it embeds "
               "the question again (a separate cache) and the sentences of the retrieved "
               f"chunks (median {statistics.median(sentences):.0f} per question)"),
    ]


# ---------------------------------------------------------------------------------------------
# LangChain comparison (langchain-postgres, installed by make bench in .venv-bench)

def langchain_missing() -> str | None:
    """Why the LangChain comparison cannot run here, or None if it can."""
    try:
        import langchain_core  # noqa: F401
        import langchain_postgres  # noqa: F401
    except ImportError as exc:
        return (f"LangChain comparison: {exc.name} is not installed in this environment "
                "(`make bench` runs the benchmark from .venv-bench, which has it)")
    return None


def langchain_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("langchain-core", "langchain-postgres",
                                             "sqlalchemy", "psycopg")}


def local_embeddings():
    """pgask's local model as a LangChain Embeddings, so only the store differs."""
    from langchain_core.embeddings import Embeddings

    from pgask.embedders.local import get_local_embedder

    class PgaskLocalEmbeddings(Embeddings):
        def __init__(self) -> None:
            self.model = get_local_embedder()

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.model.embed(list(texts)).tolist()

        def embed_query(self, text: str) -> list[float]:
            # No cache, like a query text new to rag.search.
            return self.model.embed([text])[0].tolist()

    return PgaskLocalEmbeddings()


def langchain_store(url: str):
    """A PGVector store as its documentation sets one up, on the benchmark database."""
    from langchain_postgres import PGVector
    from sqlalchemy import create_engine

    # The creator hands SQLAlchemy a psycopg connection made from the same conninfo, with
    # psycopg's defaults (what a LangChain user gets).
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))
    return PGVector(embeddings=local_embeddings(), connection=engine,
                    collection_name="bench", use_jsonb=True)


def langchain_ingest(url: str, inputs: list[str]):
    """A PGVector store holding the chunks, and its ingest rate (chunks/s) through add_texts."""
    store = langchain_store(url)
    store.embeddings.embed_query("warm up")
    began = time.perf_counter()
    store.add_texts(inputs)
    return store, len(inputs) / (time.perf_counter() - began)


def bench_langchain(url: str, store, rate: float, ingest: Figure, inputs: list[str],
                    texts: Sequence[str]) -> list[Figure]:
    """Ingest rate and query latency through PGVector vs pgask on the same chunks."""
    for text in ("warm up", "warm up again"):
        store.similarity_search(text, k=K)
    pgask_ms, langchain_ms = [], []
    search = f"SELECT * FROM rag.search(%s, {K}, mode => 'vector', pipeline => 'bench')"
    with connect(url) as conn:
        warm_backend(conn)
        for text in texts:
            pgask_ms.append(timed_ms(conn, search, (text,)))
            began = time.perf_counter()
            store.similarity_search(text, k=K)
            langchain_ms.append((time.perf_counter() - began) * 1000)
    store.session_maker.remove()
    versions = ", ".join(f"{k} {v}" for k, v in langchain_versions().items())
    return [
        Figure("ingest vs LangChain (chunks/s)", ingest.value, "chunks/s",
               "PGVector.add_texts", rate,
               f"the {len(inputs)} chunks of the ingest row, measured right after it; "
               f"{versions}"),
    ] + latency_figures("search vs LangChain", pgask_ms, "PGVector.similarity_search",
                        langchain_ms, f"the same {len(inputs)} manual chunks (pgask: HNSW "
                        f"index; PGVector: no index, exact); {len(texts)} distinct query "
                        f"texts, new to both; k={K}")


# ---------------------------------------------------------------------------------------------

def run(url: str, pages: int, write_rounds: int, queries: int = 200, answers: int = 40,
        scale: str = "default", sizes: Sequence[int] | None = None,
        sentences: Sequence[int] | None = None) -> Report:
    sizes = tuple(sizes or SCALES[scale])
    sentences = tuple(sentences or SENTENCE_SCALES[scale])
    started = time.perf_counter()
    report = Report(settings={
        "pages": pages, "write_rounds": write_rounds, "queries": queries, "answers": answers,
        "scale": scale, "sizes": list(sizes), "sentences": list(sentences), "k": K,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(), "load_start": os.getloadavg()[0]})
    missing = langchain_missing()
    if missing:
        print(missing, flush=True)
        report.skipped.append(missing)
    bench_url = scratch_database(url)
    docs = manual_pages(pages)
    asked = questions([d.title for d in docs], max(queries, answers))
    texts = asked[:queries]
    # Table order: ingest and writes, search, recall, answer, LangChain.
    searches, recalls, rest = [], [], []
    with connect(bench_url) as conn:
        ingest, inputs = step("ingest", lambda: bench_ingest(conn, [d.content for d in docs]))
        report.figures.append(ingest)
        if not missing:
            # Right after pgask's ingest, so both rates see the same machine state.
            store, rate = step("LangChain ingest", lambda: langchain_ingest(bench_url, inputs))
        report.figures += step("write latency", lambda: bench_write_latency(conn, write_rounds))
        literals = embed_literals(texts)
        for rows in sizes:
            search, recall = step(f"{size_label(rows)} synthetic", lambda rows=rows:
                                  bench_synthetic(bench_url, conn, rows, texts))
            searches += search
            recalls += recall
        for n in sentences:
            recalls += step(f"recall on {size_label(n)} manual sentences",
                            lambda n=n: bench_sentences(bench_url, conn, n, literals))
        rest += step("answers", lambda: bench_answer(bench_url, conn, docs, asked[:answers]))
        if not missing:
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
                       help="store sizes: default 10k and 100k synthetic vectors and 10k "
                       "real sentence embeddings; large adds 1M synthetic and 60k sentences "
                       "(much longer)")
    bench.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                       help="synthetic store sizes instead of --scale's, e.g. 2000,10000")
    bench.add_argument("--sentences", type=lambda s: [int(x) for x in s.split(",")],
                       help="manual sentences for the real-embedding recall instead of "
                       "--scale's, e.g. 2000")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--markdown", metavar="FILE",
                       help="also write the table, command, machine and date (BENCHMARKS.md)")

    def command(args) -> int:
        report = run(connect_url(args), args.pages, args.write_rounds, args.queries,
                     args.answers, args.scale, args.sizes, args.sentences)
        print(report.table())
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n")
        if args.markdown:
            options = [("pages", args.pages), ("write-rounds", args.write_rounds),
                       ("queries", args.queries), ("answers", args.answers),
                       ("scale", args.scale)]
            for name, values in (("sizes", args.sizes), ("sentences", args.sentences)):
                if values:
                    options.append((name, ",".join(map(str, values))))
            command = "pgask bench " + " ".join(f"--{k} {v}" for k, v in options)
            if os.environ.get("MAKELEVEL"):  # set by make for the commands it runs
                command = f"make bench` (BENCH_SCALE={args.scale}), which runs `{command}"
            Path(args.markdown).write_text(report.markdown(command))
        return 0

    bench.set_defaults(func=command)
