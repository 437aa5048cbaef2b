"""`pgask bench` (`make bench`): speed figures, each next to a baseline measured in the same run.

- ingest: chunks/s embedded by rag.process_queue (chunking, embedding and writing inside
  PostgreSQL) vs the same model called directly from Python on the same chunk texts;
- write latency: a single-row INSERT into a table with an async pipeline vs the same INSERT
  into an identical table without one;
- worker fleets: rows/s of `pgask worker --concurrency N` vs 1 connection, on a loopback
  provider taking 200 ms per request and with the local model;
- scale: rag.search (hybrid, vector, keyword) vs raw HNSW on chunk stores of 10k and 100k
  chunks of real text (1M with --scale large), stand-in vectors; BM25 pruned vs exhaustive;
- query: rag.search latency vs a hand-written pgvector query on real sentence embeddings;
- recall@10 of the HNSW index vs an exact scan, on real embeddings;
- answer: rag_answer latency and its phases (embed, search, extractive step);
- LangChain: ingest and query through langchain-postgres' PGVector over the same database,
  model and chunks (when langchain-postgres is installed: `make bench` installs it in its own
  environment, .venv-bench).

It works in a scratch database (pgask_bench) that it drops and recreates, on the PostgreSQL
manual pages `make setup` installs. Figures depend on the machine: compare ratios, and only
absolute numbers from the same machine.

Modules: ``common`` (settings, scratch database, timing, the pages measured on), ``report``
(figures, the table and BENCHMARKS.md, pure helpers), one per measurement (``ingest``,
``fleet``, ``scale``, ``search``, ``stores``, ``answer``, ``langchain``), ``standin`` (the
fast stand-in embedder served on loopback), and ``run`` (the order, the command).
"""

from pgask_measure.bench.common import QUESTION_TEMPLATES
from pgask_measure.bench.report import (
    Figure,
    Report,
    latency_figures,
    percentile,
    questions,
    random_unit_vectors,
    recall_at_k,
    size_label,
)
from pgask_measure.bench.run import add_bench_parser, run

__all__ = [
    "QUESTION_TEMPLATES",
    "Figure",
    "Report",
    "add_bench_parser",
    "latency_figures",
    "percentile",
    "questions",
    "random_unit_vectors",
    "recall_at_k",
    "run",
    "size_label",
]
