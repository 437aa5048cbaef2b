"""Figures and the report (table, BENCHMARKS.md, JSON), and the pure helpers that compute
them (tests/unit/test_bench.py)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pgask_measure.bench.common import DIMENSIONS, QUESTION_TEMPLATES


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
  model in the benchmark process, alternating (median of 3 rounds each). The target is
  >= 0.95x.
- INSERT p50/p95 (async pipeline): latency of a single-row autocommit INSERT into a table with
  an async pipeline (the statement trigger queues the row) vs an identical table without one.
  The baseline's commit is fast on this machine, so the fixed trigger cost weighs heavily in
  the ratio.
- COPY 100k rows (async pipeline): milliseconds for one autocommit `COPY t (id, body) FROM
  STDIN` of 100,000 short rows (about 60-character bodies) into an empty table with an async
  pipeline (its statement trigger appends every key to rag.inbox, commit included) vs
  the same COPY, from the same pre-built buffer, into an identical table without one. The
  pipeline and both tables are recreated before each round (not timed) and the queue is never
  processed: the worker's cost is not the writer's. Median of 5 rounds each, alternating, the
  first table of a round alternating too. The target is <= 1.2x.
- worker fleet: rows/s embedded by `pgask worker --concurrency N` (its run_fleet: N
  connections, each leasing its own batches of 4 rows) against a loopback OpenAI-compatible
  provider in the benchmark process that answers every request after 200 ms, vs 1 connection;
  the ideal ratio is N. With the local model: 2 connections (two backends, each running its
  own copy of the model) vs 1, on the machine's cores. Every connection is warmed first
  (tokenizer, provider, model loaded), so no rate pays a backend's start-up.
- scale N: chunk stores of N chunks of real text: every page of the PostgreSQL manual
  through pgask's HTML loader and chunker, plus SciFact's abstracts when the corpus is there,
  repeated with per-copy variation (each copy drops a different tenth of each chunk's words
  and carries its own token), with vectors from a stand-in embedder (a hashed bag of words
  through a fixed random projection to 384 dimensions: lexical neighbours, not semantic, but
  not noise) served on loopback. hybrid / vector / keyword = rag.search's body
  (rag._search_rows) given the query vector, vs raw HNSW: the hand-written
  `ORDER BY embedding <=> $1 LIMIT 10` with the same vector. "keyword (BM25 pruned)" compares
  keyword search (MaxScore pruning) with the scoring statement rag.search ran before pruning,
  alone (every chunk holding any query term scored).
- search on N sentences, new text: `SELECT * FROM rag.search(q, 10, mode => 'vector',
  pipeline => ...)` with a query text this connection has not seen, so the model embeds it
  inside PostgreSQL, vs what an application does without pgask: embed the same text with the
  same model in its own process, then run the hand-written pgvector query. The store holds
  real embeddings of manual sentences. Latency seen by the client, round trip included.
- search, cached text: the same rag.search calls again: the query vector now comes from the
  per-connection cache of recent query texts, so this is rag.search's own cost (pipeline
  lookup, dynamic SQL, index scan) vs the hand-written query given the precomputed vector,
  the floor.
- recall@10: the share of the exact 10 nearest neighbours (a sequential scan, `SET
  enable_indexscan = off`) that the HNSW index returns, at `hnsw.ef_search` 40 and 100, with
  the question texts' real embeddings as queries on the real embeddings of distinct
  sentences sampled from the whole manual.
- answer: `SELECT rag_answer(q)` for questions about the ingested manual pages, each new to
  its connection, vs retrieval alone (embed + search). Phases, measured on the same questions
  in a second connection: embed = `rag.embed(q, 'local')`; search = `rag.search(q, 5)` once that
  embedding is cached; extractive step = `rag.answer(q, 5)` with the embedding cached, minus
  search: answers are extractive (no LLM), so this is where "generate" would be. Phase ratios
  are shares of the whole rag_answer p50.
- memory per connection (USS MB): N connections open together (50 by default), each runs a
  first rag.search, a second one, then rag_answer; each backend's USS (Private_Clean +
  Private_Dirty of /proc/PID/smaps_rollup) idle, and what it added after the searches and
  after the answer, with the shared model process (the default) vs a model in each backend
  (`embedding_service = off`, measured on fewer connections). The total adds the shared
  process's own USS. First search: p50 of each new connection's first rag.search vs its
  second (both texts new to it). Search and ingest rates: rag.search on new texts and
  `rag.process_queue` on a fresh pipeline, in short rounds that alternate between two warm
  connections opened side by side, one per path (medians of the rounds). Backend layers: what
  each import or load adds to one in-backend connection, in order (targets: <= 50 MB per
  connection, <= 1.5 GB in all, first search <= warm + 50 ms, rates >= 1/1.1x).
- vs LangChain: the same chunk texts and the same model (pgask's local embedder wrapped as a
  LangChain `Embeddings`) through langchain-postgres' `PGVector` store in the same database, as
  its documentation sets it up (no index on its table: exact search). Ingest = pgask's
  process_queue rate from the ingest row vs `PGVector.add_texts` (LangChain gets the chunks
  ready-made, so its time leaves out chunking). Search = rag.search vs
  `PGVector.similarity_search`, k = 10, query texts new to both (LangChain embeds every query
  in the client; pgask in the database); first as its documentation sets it up (no index,
  exact), then after an HNSW index (pgask's m and ef_construction) is created on its table.
"""


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


def round_pairs(values: Sequence[float], baseline: Sequence[float], digits: int = 1) -> str:
    """Each round's pair, value/baseline, comma-separated: the spread between rounds is a
    figure's noise. round_pairs([1.24, 2.0], [3.0, 4.5]) == '1.2/3.0, 2.0/4.5'."""
    return ", ".join(f"{v:.{digits}f}/{b:.{digits}f}"
                     for v, b in zip(values, baseline, strict=True))


def latency_figures(name: str, values: Sequence[float], baseline_name: str,
                    baseline: Sequence[float], note: str = "") -> list[Figure]:
    """p50 and p95 rows for one latency and its baseline (the note goes on the first)."""
    return [
        Figure(f"{name} p50", statistics.median(values), "ms", baseline_name,
               statistics.median(baseline), note),
        Figure(f"{name} p95", percentile(values, 95), "ms", baseline_name,
               percentile(baseline, 95)),
    ]
