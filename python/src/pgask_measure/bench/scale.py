"""Scale mode: chunk stores of real text at 10k, 100k (and 1M) chunks, and rag.search's
hybrid, vector and keyword latency on them next to raw HNSW with the vector given, and
keyword search with BM25 pruning next to exhaustive BM25 scoring.

Text: the whole PostgreSQL manual (pgask's HTML loader and chunker) and the SciFact corpus
(when ../shared/data/scifact/corpus.jsonl or $PGASK_SCIFACT is there), repeated until the
size is reached; every copy after the first drops a different tenth of each chunk's words and
gets its own token (rev<N>), so copies are not identical and document frequencies grow the
way a larger corpus's do instead of all terms multiplying alike. Vectors: the stand-in
embedder (bench/standin.py, a hashed bag of words through a fixed random projection),
served on loopback and registered as the pipelines' embedder, so rag.search embeds its
queries the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

from pgask_measure.bench.common import MANUAL, K, connect, store_of, timed_ms
from pgask_measure.bench.report import Figure, latency_figures, size_label
from pgask_measure.bench.standin import StandinServer, standin_vectors

REPO = Path(__file__).resolve().parents[4]
# ../shared next to the checkout (or next to the worktrees' folder).
SCIFACT = Path(os.environ.get("PGASK_SCIFACT") or next(
    (p for p in (REPO.parent / "shared" / "data" / "scifact",
                 REPO.parent.parent / "shared" / "data" / "scifact") if p.exists()),
    REPO.parent / "shared" / "data" / "scifact"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pgask-bench"
DROP = 0.1


def _chunked(texts: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    from pgask.chunking import ChunkerConfig, chunk_document
    from pgask.embedders.local import MAX_INPUT_TOKENS, count_tokens

    config = ChunkerConfig.from_dict({})
    return [(title, c.content) for title, text in texts for c in chunk_document(
        text, config, embed_limit=(count_tokens, MAX_INPUT_TOKENS))]


def base_chunks() -> tuple[list[tuple[str, str]], str]:
    """(title, content) of every chunk of the sources, and what they are. Chunking the whole
    manual takes minutes on a busy machine: cached under ~/.cache/pgask-bench, keyed by the
    sources' names and sizes and pgask's chunking code."""
    import pgask.chunking
    from pgask.loaders import load_file

    pages = sorted(MANUAL.glob("*.html"))
    if not pages:
        raise SystemExit(f"no PostgreSQL manual under {MANUAL}: run make setup")
    corpus = SCIFACT / "corpus.jsonl"
    sources = pages + ([corpus] if corpus.exists() else [])
    key = hashlib.sha256()
    for path in sources:
        key.update(f"{path.name}:{path.stat().st_size}\n".encode())
    for path in sorted(Path(pgask.chunking.__file__).parent.glob("*.py")):
        key.update(path.read_bytes())
    cached = CACHE / f"scale-{key.hexdigest()[:16]}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return [tuple(c) for c in data["chunks"]], data["what"]
    manual = _chunked([(d.title, d.content) for d in map(load_file, pages)])
    what = f"{len(manual):,} chunks of the PostgreSQL manual ({len(pages)} pages)"
    chunks = manual
    if corpus.exists():
        docs = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
        scifact = _chunked([(d.get("title", ""), d["text"]) for d in docs if d.get("text")])
        chunks = manual + scifact
        what += f" and {len(scifact):,} of SciFact ({len(docs):,} abstracts)"
    else:
        what += f" (no SciFact corpus at {corpus})"
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"what": what, "chunks": chunks}))
    return chunks, what


def varied(chunks: Sequence[tuple[str, str]], rows: int) -> Iterator[tuple[str, str]]:
    """`rows` chunks: the base chunks, then copies with a tenth of each chunk's words dropped
    (a different tenth each copy) and a per-copy token."""
    for n in range(rows):
        copy, i = divmod(n, len(chunks))
        title, content = chunks[i]
        if copy:
            rng = random.Random(n)
            words = [w for w in content.split() if rng.random() >= DROP]
            content = " ".join(words) + f" rev{copy}"
        yield title, content


def _copy_rows(url: str, store: str, rows: Iterator[tuple[str, str]], batch: int = 5000
               ) -> int:
    from pgvector.psycopg import register_vector

    n = 0
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            f"COPY rag.{store} (document_id, ordinal, title, content, token_count, char_start,"
            " char_end, embed_hash, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "int4", "text", "text", "int4", "int4", "int4", "bytea",
                            "vector"])
            pending: list[tuple[str, str]] = []

            def flush() -> None:
                nonlocal n
                vectors = standin_vectors([f"{t}\n{c}" if t else c for t, c in pending])
                for (title, content), vector in zip(pending, vectors, strict=True):
                    copy.write_row((str(n // 10), n % 10 + 1, title, content,
                                    len(content.split()), 0, len(content),
                                    n.to_bytes(8, "big"), vector))
                    n += 1
                pending.clear()

            for row in rows:
                pending.append(row)
                if len(pending) >= batch:
                    flush()
            if pending:
                flush()
    return n


def fill(url: str, conn: psycopg.Connection, pipeline: str, chunks, rows: int
         ) -> tuple[str, float, float]:
    """A pipeline on the stand-in embedder whose chunk table holds `rows` varied chunks;
    returns the table, the load seconds and the HNSW build seconds."""
    conn.execute(f"CREATE TABLE {pipeline}_docs (id integer PRIMARY KEY, body text NOT NULL)")
    conn.execute("SELECT rag.create_pipeline(%s, %s, 'body', embedder => 'standin')",
                 (pipeline, f"{pipeline}_docs"))
    store = store_of(conn, pipeline)
    (indexdef,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'rag'"
                               " AND indexname = %s", (f"{store}_hnsw",)).fetchone()
    conn.execute(f'DROP INDEX rag."{store}_hnsw"')
    began = time.perf_counter()
    _copy_rows(url, store, varied(chunks, rows))
    load_seconds = time.perf_counter() - began
    conn.execute(f"SET maintenance_work_mem = '{max(256, rows * 4 // 1000)}MB'")
    began = time.perf_counter()
    conn.execute(indexdef)
    build_seconds = time.perf_counter() - began
    conn.execute("RESET maintenance_work_mem")
    conn.execute(f"VACUUM ANALYZE rag.{store}")
    return store, load_seconds, build_seconds


def exhaustive_bm25(conn: psycopg.Connection, pipeline: str, store: str, query: str
                    ) -> tuple[str, dict] | None:
    """The BM25 query rag.search ran before pruning (every chunk holding any query term is
    scored), with its parameters; None when no query term occurs. Lexemes, idf and avgdl are
    looked up here, untimed: the baseline is the scoring statement alone."""
    from pgask.retrieval.search import tsquery_all

    (lexemes,) = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s))",
                              (query,)).fetchone()
    rows = conn.execute("SELECT lexeme, idf, avgdl FROM rag._bm25_idf(%s, %s)",
                        (store, lexemes)).fetchall()
    if not rows:
        return None
    sql = (
        "WITH q AS (SELECT * FROM unnest(%(terms)s::text[], %(idfs)s::float8[])"
        " AS q (lexeme, idf))"
        " SELECT c.id, sum(q.idf * m.tf * (1.2 + 1)"
        "  / (m.tf + 1.2 * (1 - 0.75 + 0.75 * c.doc_length / %(avgdl)s))) AS score"
        f" FROM rag.{pipeline}_chunks AS c"
        " CROSS JOIN LATERAL (SELECT u.lexeme, cardinality(u.positions) AS tf"
        "  FROM unnest(ts_filter(setweight(c.tsv, 'A', %(terms)s::text[]), '{a}')) AS u) AS m"
        " JOIN q ON q.lexeme = m.lexeme"
        " WHERE c.tsv @@ %(tsq)s::tsquery"
        f" GROUP BY c.id ORDER BY score DESC, c.id LIMIT {K * 4}")
    terms = [r[0] for r in rows]
    return sql, {"terms": terms, "idfs": [r[1] for r in rows], "avgdl": rows[0][2],
                 "tsq": " | ".join(tsquery_all([t]) for t in terms)}


def latencies(url: str, pipeline: str, store: str, texts: Sequence[str],
              exhaustive: bool = True) -> dict[str, list[float]]:
    """Per query text: rag.search's milliseconds in each mode, raw HNSW's and (unless
    `exhaustive` is false: seconds per query at 1M) exhaustive BM25 scoring's."""
    from pgask.embedders import vector_literal

    # rag.search minus its query embedding: the body it calls with the embedding it made (the
    # stand-in's embedding is a loopback HTTP call, which the local model's query cache
    # would skip; the text is validated and the pipeline looked up here too).
    search = (f"SELECT * FROM jsonb_to_recordset(rag._search_rows(%s, %s, {K}, NULL, %s,"
              f" '{pipeline}', NULL)) AS r (chunk_id bigint, score float8)")
    floor = (f"SELECT id, document_id, title, content, metadata,"
             f" 1 - (embedding <=> %(v)s::vector) AS score FROM rag.{pipeline}_chunks"
             f" ORDER BY embedding <=> %(v)s::vector LIMIT {K}")
    literals = [vector_literal(v) for v in standin_vectors(texts)]
    out: dict[str, list[float]] = {k: [] for k in (
        "hybrid", "vector", "keyword", "floor", "exhaustive")}
    with connect(url) as conn:
        # A round of every query in every mode whose times are dropped comes first: otherwise
        # the mode timed first for a query (hybrid) reads its candidates' pages from disk and
        # the next (keyword) finds them cached, which skews the two against each other.
        for kept in (False, True):
            for text, literal in zip(texts, literals, strict=True):
                times = {mode: timed_ms(conn, search,
                                        (text, None if mode == "keyword" else literal, mode))
                         for mode in ("hybrid", "vector", "keyword")}
                times["floor"] = timed_ms(conn, floor, {"v": literal})
                if kept:
                    for mode, ms in times.items():
                        out[mode].append(ms)
        # The exhaustive statement reads the whole store: timed between the queries, it
        # pushed the next query's pages out of the caches, so the mode timed first (hybrid)
        # paid for it (51.5 ms p50 at 1M, against 35.6 ms timed apart).
        if exhaustive:
            for text in texts:
                baseline = exhaustive_bm25(conn, pipeline, store, text)
                if baseline:
                    out["exhaustive"].append(timed_ms(conn, *baseline))
    return out


def scale_queries(titles: Sequence[str], n: int) -> list[str]:
    """Half questions about manual pages, half SciFact claims (when present)."""
    from pgask_measure.bench.report import questions

    claims = []
    path = SCIFACT / "queries.jsonl"
    if path.exists():
        claims = [json.loads(line)["text"] for line in path.read_text().splitlines()
                  if line.strip()]
    asked = questions(titles, n - min(len(claims), n // 2))
    return asked + claims[:n - len(asked)]


def bench_scale(url: str, conn: psycopg.Connection, sizes: Sequence[int], titles: Sequence[str],
                queries: int) -> list[Figure]:
    chunks, what = base_chunks()
    texts = scale_queries(titles, queries)
    figures: list[Figure] = []
    with StandinServer() as server:
        server.register(conn, "standin")
        for rows in sizes:
            label = size_label(rows)
            pipeline = f"scale_{label.replace('.', '_').lower()}"
            store, load_s, build_s = fill(url, conn, pipeline, chunks, rows)
            print(f"  {label} real-text chunks loaded in {load_s:.0f} s (HNSW build "
                  f"{build_s:.0f} s)", flush=True)
            t = latencies(url, pipeline, store, texts)
            copies = rows / len(chunks)
            note = (f"{rows:,} chunks: {what}, {copies:.2g} copies with per-copy variation; "
                    f"stand-in vectors (hashed bag of words x random projection, 384 dims); "
                    f"HNSW built in {build_s:.0f} s; {len(texts)} queries (manual questions "
                    f"and SciFact claims), each run once in every mode untimed first; "
                    f"rag.search timed without its query embedding (rag._search_rows given "
                    f"the vector); k={K}")
            for mode in ("hybrid", "vector", "keyword"):
                figures += latency_figures(f"scale {label}: {mode} rag.search", t[mode],
                                           "raw HNSW, vector given", t["floor"],
                                           note if mode == "hybrid" else "")
            figures += latency_figures(
                f"scale {label}: keyword rag.search (BM25 pruned)", t["keyword"],
                "exhaustive BM25 scoring statement", t["exhaustive"],
                f"the baseline is the scoring query rag.search ran before MaxScore pruning, "
                f"alone (lexemes, idf and avgdl looked up untimed; {len(t['exhaustive'])} "
                "queries with a matching term, timed after every rag.search round, as it "
                "reads the whole store), so the ratio is conservative")
    return figures
