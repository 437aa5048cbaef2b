"""The queue processor behind rag.process_queue (and sync pipelines' triggers).

Jobs are claimed with a lease and committed before any embedding happens, so a slow or failing
provider never holds a lock a writer needs. A result is written only if the source row still
holds the text that was embedded; chunks whose embedded text is unchanged reuse their vectors.
Runs inside PostgreSQL: `plpy` is PL/Python's module, passed in by the SQL functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass

from pgask.chunking import ChunkerConfig, chunk_document, truncate_to_tokens
from pgask.embedders import vector_literal
from pgask.embedders.errors import EmbedderError
from pgask.embedders.registry import EmbedderSpec, provider_for

# The title prefixed to each chunk's embedded text is cut to this many tokens.
MAX_TITLE_TOKENS = 64


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: str
    key_join_sql: str
    content_sql: str
    title_sql: str
    metadata_sql: str
    chunker: dict
    embedder: str
    active_set: int
    building_set: int | None
    building_embedder: str | None
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float

    def store(self, embedding_set: int) -> str:
        # Pipeline names are checked against ^[a-z_][a-z0-9_]*$ when created.
        return f'rag."{self.name}_chunks_{embedding_set}"'

    def embedder_for(self, embedding_set: int) -> str:
        return self.embedder if embedding_set == self.active_set else self.building_embedder


@dataclass(frozen=True)
class Job:
    id: int
    pipeline: str
    embedding_set: int
    document_id: str
    generation: int
    attempts: int


@dataclass
class Planned:
    """One source row, chunked, with the exact text each chunk's vector is computed from."""

    document_id: str
    source_state: tuple
    title: str
    metadata: dict
    chunks: list
    inputs: list[str]
    hashes: list[bytes]


def load_pipeline(plpy, name: str) -> Pipeline:
    rows = plpy.execute(plpy.prepare(
        "SELECT name, source::text AS source, key_join_sql, content_sql, title_sql, metadata_sql,"
        " chunker::text AS chunker, embedder, active_set, building_set, building_embedder,"
        " max_attempts, retry_base_seconds, retry_max_seconds"
        " FROM rag.pipelines WHERE name = $1", ["text"]), [name])
    if not rows:
        raise LookupError(f"pipeline {name!r} does not exist")
    row = dict(rows[0])
    row["chunker"] = json.loads(row["chunker"])
    return Pipeline(**row)


def load_embedder(plpy, name: str):
    rows = plpy.execute(plpy.prepare(
        "SELECT name, provider, model, dimensions, base_url, api_key_env,"
        " options::text AS options_json FROM rag.embedders WHERE name = $1", ["text"]), [name])
    if not rows:
        raise EmbedderError(f"embedder {name!r} is not registered", retryable=False)

    return provider_for(EmbedderSpec(**dict(rows[0])), lambda s: read_secret(plpy, s))


def read_secret(plpy, secret: str) -> str | None:
    """A provider API key from rag.secrets, through rag._secret, which only the owner of
    schema rag may run: a role asking a question with an LLM or reranker whose key is a
    'secret:' entry gets this error, which callers turn into a fallback or a clear message."""
    try:
        found = plpy.execute(plpy.prepare("SELECT rag._secret($1) AS v", ["text"]), [secret])
    except plpy.SPIError as exc:
        raise EmbedderError(
            f"the role running this may not read API keys stored with rag.set_secret ({exc}); "
            "give the provider a key in an environment variable of the database server "
            "instead, or run this as the owner of schema rag", retryable=False) from None
    return found[0]["v"] if found else None


def fetch_sources(plpy, p: Pipeline, ids: list[str]) -> dict[str, tuple]:
    """document_id -> (content, title, metadata JSON) as the source table holds them now."""
    plan = plpy.prepare(
        f"SELECT k.document_id, {p.content_sql} AS content, {p.title_sql} AS title,"
        f" ({p.metadata_sql})::text AS metadata"
        f" FROM unnest($1::text[]) AS k (document_id) JOIN {p.source} AS s ON {p.key_join_sql}",
        ["text[]"])
    return {r["document_id"]: (r["content"] or "", r["title"] or "", r["metadata"])
            for r in plpy.execute(plan, [ids])}


def plan_documents(p: Pipeline, provider, sources: dict[str, tuple]) -> list[Planned]:
    config = ChunkerConfig.from_dict(p.chunker)
    counter, limit = provider.input_limit()
    planned = []
    for document_id, state in sources.items():
        content, title, metadata_json = state
        embedded_title = title
        if title and counter(title) > MAX_TITLE_TOKENS:
            # Embedded in front of every chunk: a very long title would leave no room for text.
            embedded_title = truncate_to_tokens(title, MAX_TITLE_TOKENS, counter)
        prefix = f"{embedded_title}\n" if title else ""

        def with_title(text: str, prefix=prefix) -> int:
            return counter(prefix + text)

        chunks = chunk_document(content, config, embed_limit=(with_title, limit))
        inputs = [prefix + c.embed_text for c in chunks]
        planned.append(Planned(
            document_id, state, title, json.loads(metadata_json), chunks, inputs,
            [hashlib.sha256(text.encode("utf-8")).digest() for text in inputs]))
    return planned


def reusable_vectors(plpy, store: str, hashes: list[bytes]) -> dict[bytes, str]:
    """Vectors already computed for the same text (any row of this chunk table)."""
    if not hashes:
        return {}
    plan = plpy.prepare(
        f"SELECT DISTINCT ON (embed_hash) embed_hash, embedding::text AS embedding FROM {store}"
        " WHERE embed_hash = ANY($1::bytea[])", ["bytea[]"])
    return {bytes(r["embed_hash"]): r["embedding"] for r in plpy.execute(plan, [hashes])}


def compute_vectors(provider, planned: list[Planned], known: dict[bytes, str]
                    ) -> tuple[dict[bytes, str], int]:
    """Vectors for every chunk, embedding only texts not seen before; returns (vectors, n)."""
    missing: dict[bytes, str] = {}
    for doc in planned:
        for digest, text in zip(doc.hashes, doc.inputs, strict=True):
            if digest not in known:
                missing.setdefault(digest, text)
    vectors = dict(known)
    if missing:
        embedded = provider.embed(list(missing.values()))
        for digest, vector in zip(missing, embedded, strict=True):
            vectors[digest] = vector_literal(vector)
    return vectors, len(missing)


def write_chunks(plpy, store: str, doc: Planned, vectors: dict[bytes, str]) -> None:
    plpy.execute(plpy.prepare(f"DELETE FROM {store} WHERE document_id = $1", ["text"]),
                 [doc.document_id])
    if not doc.chunks:
        return
    metadata = [json.dumps({**doc.metadata, **c.metadata}) for c in doc.chunks]
    plpy.execute(plpy.prepare(
        f"INSERT INTO {store} (document_id, ordinal, title, content, token_count, char_start,"
        " char_end, embed_hash, embedding, metadata)"
        " SELECT $1, u.ordinal, $2, u.content, u.tokens, u.cs, u.ce, u.hash, u.vec::vector,"
        " u.meta::jsonb FROM unnest($3::int[], $4::text[], $5::int[], $6::int[], $7::int[],"
        " $8::bytea[], $9::text[], $10::text[]) AS u (ordinal, content, tokens, cs, ce, hash,"
        " vec, meta)",
        ["text", "text", "int[]", "text[]", "int[]", "int[]", "int[]", "bytea[]", "text[]",
         "text[]"]),
        [doc.document_id, doc.title, [c.ordinal for c in doc.chunks],
         [c.content for c in doc.chunks], [c.token_count for c in doc.chunks],
         [c.start for c in doc.chunks], [c.end for c in doc.chunks], doc.hashes,
         [vectors[h] for h in doc.hashes], metadata])


def backoff_seconds(attempts: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half fixed, half random), never below Retry-After."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    delay = delay / 2 + random.uniform(0, delay / 2)
    return max(delay, retry_after or 0.0)


def _add_stats(plpy, pipeline: str, done: int, embedded: int, reused: int, stale: int) -> None:
    plpy.execute(plpy.prepare(
        "UPDATE rag.pipeline_stats SET done = done + $2, chunks_embedded = chunks_embedded + $3,"
        " chunks_reused = chunks_reused + $4, stale_discarded = stale_discarded + $5,"
        " last_done_at = CASE WHEN $2 > 0 THEN now() ELSE last_done_at END"
        " WHERE pipeline = $1", ["text", "bigint", "bigint", "bigint", "bigint"]),
        [pipeline, done, embedded, reused, stale])


_CLAIM = """
UPDATE rag.queue AS q
SET leased_until = now() + make_interval(secs => $2), lease_owner = $3,
    attempts = q.attempts + 1, last_attempt_at = now()
WHERE q.id IN (
    SELECT id FROM rag.queue
    WHERE status = 'pending' AND not_before <= now()
      AND (leased_until IS NULL OR leased_until < now())
      AND ($1::text IS NULL OR pipeline = $1)
    ORDER BY not_before, id
    LIMIT $4
    FOR UPDATE SKIP LOCKED)
RETURNING q.id, q.pipeline, q.embedding_set, q.document_id, q.generation, q.attempts
"""


def claim(plpy, pipeline, batch_size: int, lease_seconds: float) -> list[Job]:
    owner = f"{os.uname().nodename}:{os.getpid()}"
    rows = plpy.execute(plpy.prepare(_CLAIM, ["text", "float8", "text", "int"]),
                        [pipeline, lease_seconds, owner, batch_size])
    return [Job(**dict(r)) for r in rows]


def _finish(plpy, job: Job) -> None:
    """Done: delete the job unless it was queued again meanwhile; then release it."""
    plpy.execute(plpy.prepare(
        "DELETE FROM rag.queue WHERE id = $1 AND generation = $2", ["bigint", "bigint"]),
        [job.id, job.generation])
    _release(plpy, job, count_attempt=True)


def _release(plpy, job: Job, count_attempt: bool) -> None:
    plpy.execute(plpy.prepare(
        "UPDATE rag.queue SET leased_until = NULL, lease_owner = NULL,"
        " attempts = CASE WHEN $3 OR generation <> $2 THEN attempts ELSE attempts - 1 END"
        " WHERE id = $1", ["bigint", "bigint", "bool"]),
        [job.id, job.generation, count_attempt])


def _fail(plpy, p: Pipeline, jobs: list[Job], error: EmbedderError) -> None:
    for job in jobs:
        dead = not error.retryable or job.attempts >= p.max_attempts
        delay = backoff_seconds(job.attempts, p.retry_base_seconds, p.retry_max_seconds,
                                error.retry_after)
        plpy.execute(plpy.prepare(
            "UPDATE rag.queue SET status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,"
            " not_before = now() + make_interval(secs => $4), leased_until = NULL,"
            " lease_owner = NULL, last_error = $5"
            " WHERE id = $1 AND generation = $2", ["bigint", "bigint", "bool", "float8", "text"]),
            [job.id, job.generation, dead, delay, str(error)])
        _release(plpy, job, count_attempt=True)


def _as_embedder_error(exc: Exception) -> EmbedderError:
    if isinstance(exc, EmbedderError):
        return exc
    return EmbedderError(f"{type(exc).__name__}: {exc}", retryable=True)


def process_group(plpy, pipeline_name: str, embedding_set: int, jobs: list[Job]) -> int:
    """Processes claimed jobs of one pipeline and set; commits; returns the rows finished."""
    try:
        p = load_pipeline(plpy, pipeline_name)
    except LookupError:
        return 0  # dropped meanwhile: its queue rows went with it
    if embedding_set not in (p.active_set, p.building_set):
        for job in jobs:  # a set that was switched away from or abandoned
            _finish(plpy, job)
        plpy.commit()
        return 0
    store = p.store(embedding_set)
    ids = [job.document_id for job in jobs]
    try:
        provider = load_embedder(plpy, p.embedder_for(embedding_set))
        sources = fetch_sources(plpy, p, ids)
        planned = plan_documents(p, provider, sources)
        known = reusable_vectors(plpy, store, [h for d in planned for h in d.hashes])
        plpy.commit()  # no transaction stays open while the provider works
        vectors, embedded = compute_vectors(provider, planned, known)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the jobs
        plpy.rollback()
        _fail(plpy, p, jobs, _as_embedder_error(exc))
        plpy.commit()
        return 0

    current = fetch_sources(plpy, p, ids)
    by_id = {doc.document_id: doc for doc in planned}
    done = stale = 0
    for job in jobs:
        doc = by_id.get(job.document_id)
        if job.document_id not in current:
            _finish(plpy, job)  # the row was deleted; its chunks went with it
        elif doc is None or current[job.document_id] != doc.source_state:
            stale += 1  # changed while we embedded: the newer version is queued already
            _release(plpy, job, count_attempt=False)
        else:
            write_chunks(plpy, store, doc, vectors)
            _finish(plpy, job)
            done += 1
    reused = sum(len(doc.hashes) for doc in planned) - embedded
    _add_stats(plpy, p.name, done, embedded, reused, stale)
    plpy.commit()
    return done


def switch_finished_reembeds(plpy, pipeline: str | None) -> None:
    """Pipelines whose new embedding set has no queued rows left switch to it, atomically."""
    rows = plpy.execute(plpy.prepare(
        "SELECT p.name FROM rag.pipelines AS p WHERE p.building_set IS NOT NULL"
        " AND ($1::text IS NULL OR p.name = $1) AND NOT EXISTS (SELECT 1 FROM rag.queue AS q"
        " WHERE q.pipeline = p.name AND q.embedding_set = p.building_set)", ["text"]),
        [pipeline])
    for row in rows:
        plpy.execute(plpy.prepare("SELECT rag._switch_set($1)", ["text"]), [row["name"]])
        plpy.commit()


def process_queue(plpy, pipeline, batch_size: int, max_seconds: float,
                  lease_seconds: float) -> int:
    deadline = time.monotonic() + max_seconds
    processed = 0
    while True:
        jobs = claim(plpy, pipeline, batch_size, lease_seconds)
        plpy.commit()
        if not jobs:
            break
        groups: dict[tuple[str, int], list[Job]] = {}
        for job in jobs:
            groups.setdefault((job.pipeline, job.embedding_set), []).append(job)
        for (name, embedding_set), group in groups.items():
            processed += process_group(plpy, name, embedding_set, group)
        if time.monotonic() >= deadline:
            break
    switch_finished_reembeds(plpy, pipeline)
    return processed


def process_now(plpy, pipeline_name: str, ids: list[str]) -> None:
    """Sync mode: embed inside the writer's transaction. If the embedder fails, the rows
    stay queued (the trigger queued them first) and the write goes through."""
    p = load_pipeline(plpy, pipeline_name)
    for embedding_set in (p.active_set, p.building_set):
        if embedding_set is None:
            continue
        store = p.store(embedding_set)
        try:
            provider = load_embedder(plpy, p.embedder_for(embedding_set))
            sources = fetch_sources(plpy, p, ids)
            planned = plan_documents(p, provider, sources)
            known = reusable_vectors(plpy, store, [h for d in planned for h in d.hashes])
            vectors, embedded = compute_vectors(provider, planned, known)
        except EmbedderError as exc:
            plpy.warning(f"pipeline {p.name}: {exc}; the rows stay queued for "
                         "rag.process_queue")
            return
        for doc in planned:
            write_chunks(plpy, store, doc, vectors)
        plpy.execute(plpy.prepare(
            "DELETE FROM rag.queue WHERE pipeline = $1 AND embedding_set = $2"
            " AND document_id = ANY($3)", ["text", "int", "text[]"]),
            [p.name, embedding_set, ids])
        reused = sum(len(doc.hashes) for doc in planned) - embedded
        _add_stats(plpy, p.name, len(planned), embedded, reused, 0)
