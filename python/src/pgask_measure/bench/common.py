"""What every measurement shares: settings, the machine, the scratch database and its
connections, timing, and the manual pages and chunk texts measured on."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

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
QUESTION_TEMPLATES = (
    "What does {} do?",
    "How do I use {}?",
    "What is the syntax of {}?",
    "Which options does {} accept?",
    "What privileges does {} need?",
)


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
