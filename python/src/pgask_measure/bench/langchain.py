"""The LangChain comparison: langchain-postgres' PGVector over the same database, model and
chunks (installed by `make bench` in .venv-bench; skipped, with the reason, elsewhere)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from pgask_measure.bench.common import K, connect, timed_ms, warm_backend
from pgask_measure.bench.report import Figure, latency_figures


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
    # embedding_length gives the column a dimension (vector(384)), which an HNSW index needs.
    return PGVector(embeddings=local_embeddings(), connection=engine,
                    collection_name="bench", use_jsonb=True, embedding_length=384)


def langchain_ingest(url: str, inputs: list[str]):
    """A PGVector store holding the chunks, and its ingest rate (chunks/s) through add_texts."""
    store = langchain_store(url)
    store.embeddings.embed_query("warm up")
    began = time.perf_counter()
    store.add_texts(inputs)
    return store, len(inputs) / (time.perf_counter() - began)


def _search_pair(url: str, store, texts: Sequence[str]) -> tuple[list[float], list[float]]:
    """rag.search and PGVector.similarity_search on the same texts, interleaved, new to
    both (pgask's query cache is per connection: a fresh one each call)."""
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
    return pgask_ms, langchain_ms


def bench_langchain(url: str, store, rate: float, ingest: Figure, inputs: list[str],
                    texts: Sequence[str]) -> list[Figure]:
    """Ingest rate and query latency through PGVector vs pgask on the same chunks: as its
    documentation sets it up (no index, exact search), then with an HNSW index on its table
    (what a LangChain user who needs speed adds)."""
    exact_pgask, exact_langchain = _search_pair(url, store, texts)
    with connect(url) as conn:
        conn.execute("CREATE INDEX langchain_pg_embedding_hnsw ON langchain_pg_embedding"
                     " USING hnsw (embedding vector_cosine_ops) WITH (m = 16,"
                     " ef_construction = 64)")
        conn.execute("ANALYZE langchain_pg_embedding")
    second = [f"{t} (again)" for t in texts]  # new texts for both, so no cache helps
    hnsw_pgask, hnsw_langchain = _search_pair(url, store, second)
    store.session_maker.remove()
    versions = ", ".join(f"{k} {v}" for k, v in langchain_versions().items())
    return [
        Figure("ingest vs LangChain (chunks/s)", ingest.value, "chunks/s",
               "PGVector.add_texts", rate,
               f"the {len(inputs)} chunks of the ingest row, measured right after it; "
               f"{versions}"),
    ] + latency_figures("search vs LangChain (no index)", exact_pgask,
                        "PGVector.similarity_search", exact_langchain,
                        f"the same {len(inputs)} manual chunks (pgask: HNSW index; PGVector: "
                        f"no index, exact); {len(texts)} distinct query texts, new to both; "
                        f"k={K}") + latency_figures(
        "search vs LangChain with HNSW", hnsw_pgask, "PGVector.similarity_search, HNSW",
        hnsw_langchain, "the same, after CREATE INDEX ... USING hnsw (embedding "
        "vector_cosine_ops) on langchain_pg_embedding (m=16, ef_construction=64, pgask's "
        "settings); query texts again new to both")
