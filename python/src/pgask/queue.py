"""The queue processor behind rag.process_queue (and sync pipelines' triggers).

Writers' triggers only append the keys of the rows they touched to rag.inbox; each round
here first moves those into rag.queue (one job per key and set), then claims. Jobs are
claimed with a lease and committed before any embedding happens, so a slow or failing
provider never holds a lock a writer needs. Source rows are read only through the
pipeline's reader (rag._source_rows), which evaluates the pipeline's SQL as the source
table's owner and hands back text: nothing a table owner controls runs here. A row that is
gone loses its chunks; a row whose own evaluation failed fails alone; a result is written
only if the source row still holds the text that was embedded, and not at all when the
chunks it would write are already there. Chunks whose embedded text is unchanged reuse
their vectors. Runs inside PostgreSQL: `plpy` is PL/Python's module, passed in by the SQL
functions. (Over 400 lines: the worker's round and the sync path share every step, and each
step's guarantee depends on the order of the others.)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass

from pgask import limits, pipelines
from pgask.answering import sentence_vectors
from pgask.answering.extractive import sentence_spans
from pgask.chunking import ChunkerConfig, chunk_document
from pgask.embedders import vector_literal
from pgask.embedders.registry import load_embedder
from pgask.pipelines import Pipeline
from pgask.plans import prepared, vector_schema
from pgask.providers import EmbedderError, backoff_seconds
from pgask.text import truncate_to_tokens

# The title prefixed to each chunk's embedded text is cut to this many tokens.
MAX_TITLE_TOKENS = 64


@dataclass(frozen=True)
class Job:
    id: int
    pipeline: str
    embedding_set: int
    document_id: str
    generation: int
    attempts: int
    owner: str = ""


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


class SourceUnreadable(Exception):
    """The pipeline's reader cannot read any row (a column it uses is gone, the reader was
    changed, the table has a new owner): the pipeline is broken, not one of its rows."""


# SQLSTATE classes of a reader failure that concerns every row: syntax or access rule (a
# column, type or function gone), feature not supported, object not in prerequisite state
# (rag._source_rows: the reader must be bound again).
_WHOLE_PIPELINE_STATES = ("42", "0A", "55")


@dataclass(frozen=True)
class SourceRows:
    """What the reader returned for some keys: rows as (content, title, metadata JSON), and
    the error of each row whose own evaluation failed. A key in neither is a row that is
    gone."""

    rows: dict[str, tuple]
    problems: dict[str, str]


def fetch_sources(plpy, p: Pipeline, ids: list[str]) -> SourceRows:
    """The rows with these keys as the source table holds them now, read as its owner
    (rag._source_rows). Raises SourceUnreadable when the reader cannot run at all."""
    try:
        with plpy.subtransaction():
            rows = plpy.execute(prepared(plpy,
                "SELECT document_id, content, title, metadata, problem"
                " FROM rag._source_rows($1, 'rows', $2)", ["text", "text[]"]), [p.name, ids])
    except plpy.SPIError as exc:
        if (getattr(exc, "sqlstate", None) or "")[:2] in _WHOLE_PIPELINE_STATES:
            raise SourceUnreadable(f"its rows cannot be read: {exc}") from None
        raise
    found = SourceRows({}, {})
    for r in rows:
        if r["problem"] is not None:
            found.problems[r["document_id"]] = r["problem"]
        else:
            found.rows[r["document_id"]] = (r["content"] or "", r["title"] or "",
                                            r["metadata"] or "{}")
    return found


def claim_documents(plpy, store: str, ids: list[str]) -> set[str]:
    """The documents of `ids` whose chunks in `store` this transaction may now write: a
    transaction-level advisory lock per (chunk table, document), taken without waiting. A
    sync pipeline's writer and the workers both take it before they touch a document's
    chunks, so neither ever waits for the other (nor for a writer whose transaction was
    PREPAREd and forgotten): the one that finds it taken leaves the document for later."""
    if not ids:
        return set()
    rows = plpy.execute(prepared(plpy,
        "SELECT u.id FROM unnest($2::text[]) AS u (id)"
        " WHERE pg_try_advisory_xact_lock(rag._lock_key('chunks ' || $1 || ' ' || u.id))",
        ["text", "text[]"]), [store, sorted(set(ids))])
    return {r["id"] for r in rows}


def mark_unreadable(plpy, p: Pipeline) -> bool:
    """Marks the pipeline broken if its reader fails now for every row (rag._mark_unreadable
    calls it and records its own error: a worker cannot mark a pipeline with a reason of its
    own). Returns whether it did."""
    rows = plpy.execute(prepared(plpy, "SELECT rag._mark_unreadable($1) AS reason", ["text"]),
                        [p.name])
    return rows[0]["reason"] is not None


def plan_documents(p: Pipeline, provider, sources: dict[str, tuple],
                   bounds: limits.Limits = limits.DEFAULTS, tick=None,
                   refused: dict[str, str] | None = None) -> list[Planned]:
    """Chunks every source row. A row over a bound of rag.settings is left out and its
    reason put in `refused` (document_id -> message), when given; else the LimitError
    propagates."""
    config = ChunkerConfig.from_dict(p.chunker)
    counter, limit = provider.input_limit()
    planned = []
    for document_id, state in sources.items():
        try:
            planned.append(_plan_one(document_id, state, config, counter, limit, bounds, tick))
        except limits.LimitError as exc:
            if refused is None:
                raise
            refused[document_id] = f"pipeline {p.name}: {exc}"
    return planned


def _plan_one(document_id: str, state: tuple, config: ChunkerConfig, counter, limit: int,
              bounds: limits.Limits, tick) -> Planned:
    content, title, metadata_json = state
    limits.check_document(title + content, bounds)  # the title is counted too
    embedded_title = title
    if title and counter(title) > MAX_TITLE_TOKENS:
        # Embedded in front of every chunk: a very long title would leave no room for text.
        embedded_title = truncate_to_tokens(title, MAX_TITLE_TOKENS, counter)
    prefix = f"{embedded_title}\n" if title else ""

    def with_title(text: str, prefix=prefix) -> int:
        return counter(prefix + text)

    chunks = chunk_document(content, config, embed_limit=(with_title, limit), tick=tick)
    limits.check_chunks(len(chunks), bounds)
    inputs = [prefix + c.embed_text for c in chunks]
    return Planned(
        document_id, state, title, json.loads(metadata_json), chunks, inputs,
        [hashlib.sha256(text.encode("utf-8")).digest() for text in inputs])


@dataclass(frozen=True)
class Embedded:
    """A chunk text's vector and, from the local model, its sentences' (sentence_vectors)."""

    vector: str  # pgvector's text form
    # Sentences of a chunk whose content is this long (the content ends the embedded text,
    # so the same text and length mean the same content): (spans literal, float16 vectors).
    content_length: int | None = None
    sentences: tuple[str, bytes] | None = None

    def sentences_for(self, content: str) -> tuple[str, bytes] | tuple[None, None]:
        if self.sentences is None or self.content_length != len(content):
            return None, None
        return self.sentences


def reusable_vectors(plpy, store: str, hashes: list[bytes]) -> dict[bytes, Embedded]:
    """Vectors already computed for the same text (any row of this chunk table), with their
    sentences' where a row has them."""
    if not hashes:
        return {}
    plan = prepared(plpy,
        "SELECT DISTINCT ON (embed_hash) embed_hash, embedding::text AS embedding,"
        " length(content) AS content_length, sentence_spans::text AS spans, sentence_vectors"
        f" FROM {store} WHERE embed_hash = ANY($1::bytea[])"
        " ORDER BY embed_hash, sentence_vectors IS NULL", ["bytea[]"])
    return {bytes(r["embed_hash"]): Embedded(
                r["embedding"], r["content_length"],
                None if r["sentence_vectors"] is None
                else (r["spans"], bytes(r["sentence_vectors"])))
            for r in plpy.execute(plan, [hashes])}


def compute_vectors(provider, planned: list[Planned], known: dict[bytes, Embedded],
                    batch_texts: int | None = None, before_batch=None
                    ) -> tuple[dict[bytes, Embedded], int]:
    """Vectors for every chunk, embedding only texts not seen before; returns (vectors, n).
    Texts go to the provider `batch_texts` at a time, with `before_batch()` called before
    each request (rag.process_queue renews its leases there). The local model also gives
    the vectors of each chunk's sentences, from the same forward pass; a known vector stored
    without them (written before they existed) is computed again, which fills them."""
    with_spans = getattr(provider, "embed_with_spans", None)
    missing: dict[bytes, tuple[str, str]] = {}
    for doc in planned:
        for digest, text, chunk in zip(doc.hashes, doc.inputs, doc.chunks, strict=True):
            if digest not in known or (with_spans is not None
                                       and known[digest].sentences is None):
                missing.setdefault(digest, (text, chunk.content))
    vectors = dict(known)
    # Shortest first, so each request holds texts of similar length: a local model pads a
    # batch to its longest text, and padding is most of what a CPU forward pass costs.
    digests = sorted(missing, key=lambda d: len(missing[d][0]))
    step = batch_texts or max(1, len(digests))
    for start in range(0, len(digests), step):
        part = digests[start:start + step]
        if before_batch is not None:
            before_batch()
        texts = [missing[d][0] for d in part]
        if with_spans is None:
            embedded, pooled, spans = provider.embed(texts), None, None
        else:
            spans = [sentence_spans(missing[d][1]) for d in part]
            embedded, pooled = with_spans(texts, [_in_text(text, missing[d][1], s) for text, d, s
                                                  in zip(texts, part, spans, strict=True)])
        if len(embedded) != len(part):
            raise EmbedderError(f"embedder {getattr(provider, 'name', '?')}: asked for "
                                f"{len(part)} embeddings, got {len(embedded)}",
                                retryable=False)
        for i, (digest, vector) in enumerate(zip(part, embedded, strict=True)):
            content = missing[digest][1]
            vectors[digest] = Embedded(vector_literal(vector)) if pooled is None else Embedded(
                vector_literal(vector), len(content),
                sentence_vectors.encode(spans[i], pooled[i]))
    return vectors, len(missing)


def _in_text(text: str, content: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` of `content` moved to where they are in `text`, which ends with the content."""
    offset = len(text) - len(content)
    return [(start + offset, end + offset) for start, end in spans]


def distributed_store(plpy, p: Pipeline, embedding_set: int) -> str | None:
    """The chunk table's bare name if it is a Citus distributed table (rag.distribute_pipeline),
    whose writers keep its BM25 statistics; None for a plain one (triggers keep them)."""
    rows = plpy.execute(prepared(plpy, "SELECT rag._distributed($1) AS d", ["text"]),
                        [p.store_name(embedding_set)])
    return p.store_name(embedding_set) if rows[0]["d"] else None


# What a distributed chunk table's writers read back to keep its BM25 statistics.
_KEYWORD_COLUMNS = " RETURNING tsv::text AS tsv, doc_length"


def write_chunks(plpy, store: str, doc: Planned, vectors: dict[bytes, Embedded],
                 distributed: str | None = None) -> None:
    """Replaces a document's chunks. distributed: the bare name of a distributed chunk table
    (distributed_store), whose BM25 statistics are adjusted here (rag._bm25_apply)."""
    returning = _KEYWORD_COLUMNS if distributed else ""
    removed = plpy.execute(prepared(plpy, f"DELETE FROM {store} WHERE document_id = $1"
                                    f"{returning}", ["text"]), [doc.document_id])
    added = []
    if doc.chunks:
        metadata = [json.dumps({**doc.metadata, **c.metadata}) for c in doc.chunks]
        sentences = [vectors[h].sentences_for(c.content)
                     for h, c in zip(doc.hashes, doc.chunks, strict=True)]
        vector = f"{vector_schema(plpy)}.vector"
        added = plpy.execute(prepared(plpy,
            f"INSERT INTO {store} (document_id, ordinal, title, content, token_count,"
            " char_start, char_end, embed_hash, embedding, metadata, sentence_spans,"
            " sentence_vectors)"
            f" SELECT $1, u.ordinal, $2, u.content, u.tokens, u.cs, u.ce, u.hash, u.vec::{vector},"
            " u.meta::jsonb, u.spans::int[], u.sentences FROM unnest($3::int[], $4::text[],"
            " $5::int[], $6::int[], $7::int[], $8::bytea[], $9::text[], $10::text[],"
            " $11::text[], $12::bytea[]) AS u (ordinal, content, tokens, cs, ce, hash, vec,"
            f" meta, spans, sentences){returning}",
            ["text", "text", "int[]", "text[]", "int[]", "int[]", "int[]", "bytea[]", "text[]",
             "text[]", "text[]", "bytea[]"]),
            [doc.document_id, doc.title, [c.ordinal for c in doc.chunks],
             [c.content for c in doc.chunks], [c.token_count for c in doc.chunks],
             [c.start for c in doc.chunks], [c.end for c in doc.chunks], doc.hashes,
             [vectors[h].vector for h in doc.hashes], metadata,
             [spans for spans, _ in sentences], [blob for _, blob in sentences]])
    if distributed:
        plpy.execute(prepared(plpy,
            "SELECT rag._bm25_apply($1, $2::tsvector[], $3, $4::tsvector[], $5)",
            ["text", "text[]", "int[]", "text[]", "int[]"]),
            [distributed, [r["tsv"] for r in removed], [r["doc_length"] for r in removed],
             [r["tsv"] for r in added], [r["doc_length"] for r in added]])


def remove_chunks(plpy, store: str, document_id: str, distributed: str | None = None) -> None:
    """The chunks of a row that is gone."""
    write_chunks(plpy, store, Planned(document_id, ("", "", "{}"), "", {}, [], [], []), {},
                 distributed)


def stored_chunks(plpy, store: str, ids: list[str]) -> dict[str, list[tuple]]:
    """What the chunk table holds for these documents, chunk by chunk: (embedded text's
    hash, start, end, title, metadata); compared with a new plan by `unchanged`."""
    rows = plpy.execute(prepared(plpy,
        "SELECT document_id, embed_hash, char_start, char_end, title, metadata::text AS metadata"
        f" FROM {store} WHERE document_id = ANY($1) ORDER BY document_id, ordinal",
        ["text[]"]), [ids])
    found: dict[str, list[tuple]] = {}
    for r in rows:
        found.setdefault(r["document_id"], []).append(
            (bytes(r["embed_hash"]), r["char_start"], r["char_end"], r["title"],
             json.loads(r["metadata"])))
    return found


def unchanged(doc: Planned, stored: list[tuple] | None, fresh: set[bytes]) -> bool:
    """Whether writing `doc` would leave the chunk table as it is: the same chunks, title and
    metadata, and no vector computed anew (a fresh one fills what the stored rows lack, such
    as sentence vectors). An UPDATE of columns the pipeline does not use, or a check of
    every row, then costs chunking, not a rewrite."""
    if stored is None or any(h in fresh for h in doc.hashes):
        return False
    return stored == [(h, c.start, c.end, doc.title, {**doc.metadata, **c.metadata})
                      for h, c in zip(doc.hashes, doc.chunks, strict=True)]


def fold_statistics(plpy, stores: set[str]) -> None:
    """BM25 deltas appended by chunk writers, folded (rag._bm25_fold), in this transaction."""
    for store in sorted(stores):
        plpy.execute(prepared(plpy, "SELECT rag._bm25_fold($1)", ["text"]), [store])


def _add_stats(plpy, pipeline: str, done: int, embedded: int, reused: int, stale: int) -> None:
    plpy.execute(prepared(plpy,
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
      AND (leased_until IS NULL OR leased_until < now()
           -- A lease of a backend of this server that is gone (terminated, crashed) is free
           -- at once: leases are sized to outlast a provider's slowest request.
           OR (split_part(lease_owner, ':', 1) = $5 AND NOT EXISTS (
               SELECT 1 FROM pg_catalog.pg_stat_activity AS a
               WHERE a.pid::text = split_part(lease_owner, ':', 2))))
      AND ($1::text IS NULL OR pipeline = $1)
      AND pipeline NOT IN (SELECT name FROM rag.pipelines WHERE broken IS NOT NULL)
    ORDER BY not_before, id
    LIMIT $4
    FOR UPDATE SKIP LOCKED)
RETURNING q.id, q.pipeline, q.embedding_set, q.document_id, q.generation, q.attempts
"""


def new_owner() -> str:
    """A lease owner unique to one rag.process_queue call: two calls in one backend (or a
    backend whose pid was reused) must not take each other's leases for their own."""
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


# Captured keys moved into rag.queue per claim (rag._drain_inbox splits a statement that
# wrote more): enough to stay ahead of any batch size (at most 10000), bounded so that one
# move stays a short transaction however large the backlog or one statement.
DRAIN_KEYS = 10_000


def drain_inbox(plpy, pipeline) -> None:
    """Turns writes captured in rag.inbox into jobs (rag._drain_inbox), and commits."""
    plpy.execute(prepared(plpy, "SELECT rag._drain_inbox($1, $2)", ["text", "int"]),
                 [pipeline, DRAIN_KEYS])
    plpy.commit()


def claim(plpy, pipeline, batch_size: int, lease_seconds: float, owner: str) -> list[Job]:
    rows = plpy.execute(plpy.prepare(_CLAIM, ["text", "float8", "text", "int", "text"]),
                        [pipeline, lease_seconds, owner, batch_size, os.uname().nodename])
    return [Job(**dict(r), owner=owner) for r in rows]


class Lease:
    """The leases of one group of jobs, renewed before each embedding request.

    A renewal lasts lease_seconds or, if longer, the provider's request timeout plus a
    margin: one request can never outlive the lease, however slow the provider is. Each
    renewal commits (nothing else is open then), so other workers see it at once. Jobs
    whose lease was taken over meanwhile (it had expired) are dropped from `jobs`.
    """

    MARGIN_SECONDS = 5.0

    def __init__(self, plpy, jobs: list[Job], lease_seconds: float, provider) -> None:
        self.plpy = plpy
        self.jobs = jobs
        timeout = getattr(provider, "timeout", None) or 0.0
        self.seconds = max(lease_seconds, timeout + self.MARGIN_SECONDS)

    def renew(self) -> None:
        if not self.jobs:
            return
        rows = self.plpy.execute(self.plpy.prepare(
            "UPDATE rag.queue SET leased_until = now() + make_interval(secs => $3)"
            " WHERE id = ANY($1) AND lease_owner = $2 RETURNING id",
            ["bigint[]", "text", "float8"]),
            [[j.id for j in self.jobs], self.jobs[0].owner, self.seconds])
        kept = {r["id"] for r in rows}
        self.jobs[:] = [j for j in self.jobs if j.id in kept]
        self.plpy.commit()


def _owned(plpy, jobs: list[Job]) -> set[int]:
    """The jobs whose lease is still ours: a worker whose lease expired and was taken over
    must not write. Read without locking, on purpose: locking queue rows before the chunk
    rows would take locks in the opposite order from a writer's DELETE (chunks, BM25, queue)
    and deadlock. A new owner that claims after this check writes the same chunk rows after
    this transaction commits (it waits for their row locks), so its newer result is last."""
    if not jobs:
        return set()
    rows = plpy.execute(plpy.prepare(
        "SELECT id FROM rag.queue WHERE id = ANY($1) AND lease_owner = $2",
        ["bigint[]", "text"]), [[j.id for j in jobs], jobs[0].owner])
    return {r["id"] for r in rows}


def _finish(plpy, job: Job) -> None:
    """Done: delete the job unless it was queued again meanwhile; then release it."""
    plpy.execute(plpy.prepare(
        "DELETE FROM rag.queue WHERE id = $1 AND generation = $2 AND lease_owner = $3",
        ["bigint", "bigint", "text"]), [job.id, job.generation, job.owner])
    _release(plpy, job, count_attempt=True)


def _release(plpy, job: Job, count_attempt: bool) -> None:
    plpy.execute(prepared(plpy,
        "UPDATE rag.queue SET leased_until = NULL, lease_owner = NULL,"
        " attempts = CASE WHEN $3 OR generation <> $2 THEN attempts ELSE attempts - 1 END"
        " WHERE id = $1 AND lease_owner = $4", ["bigint", "bigint", "bool", "text"]),
        [job.id, job.generation, count_attempt, job.owner])


def _fail(plpy, p: Pipeline, jobs: list[Job], error: EmbedderError) -> None:
    for job in jobs:
        dead = not error.retryable or job.attempts >= p.max_attempts
        delay = backoff_seconds(job.attempts, p.retry_base_seconds, p.retry_max_seconds,
                                error.retry_after)
        plpy.execute(prepared(plpy,
            "UPDATE rag.queue SET status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,"
            " not_before = now() + make_interval(secs => $4), leased_until = NULL,"
            " lease_owner = NULL, last_error = $5"
            " WHERE id = $1 AND generation = $2 AND lease_owner = $6",
            ["bigint", "bigint", "bool", "float8", "text", "text"]),
            [job.id, job.generation, dead, delay, str(error)[:2000], job.owner])
        _release(plpy, job, count_attempt=True)


def _as_embedder_error(exc: Exception) -> EmbedderError:
    if limits.is_interrupt(exc):
        raise exc  # a cancel or timeout ends the call; the leases expire and others retry
    if isinstance(exc, EmbedderError):
        return exc
    return EmbedderError(f"{type(exc).__name__}: {exc}", retryable=True)


def _set_aside(plpy, p: Pipeline, jobs: list[Job], reason: str) -> int:
    """The pipeline cannot read its source: it is marked broken (rag.pipeline_status says
    why; a repair asks for every row again) and the jobs wait, their attempt not counted.
    If its reader runs again by now, the failure was this batch's: the jobs fail with it."""
    plpy.rollback()
    if not mark_unreadable(plpy, p):
        _fail(plpy, p, jobs, EmbedderError(reason, retryable=True))
        plpy.commit()
        return 0
    for job in jobs:
        _release(plpy, job, count_attempt=False)
    plpy.commit()
    return 0


def process_group(plpy, pipeline_name: str, embedding_set: int, jobs: list[Job],
                  lease_seconds: float = 300.0) -> int:
    """Processes claimed jobs of one pipeline and set; commits; returns the rows finished."""
    try:
        p = pipelines.load(plpy, pipeline_name)
    except LookupError:
        return 0  # dropped meanwhile: its queue rows went with it
    if embedding_set not in (p.active_set, p.building_set):
        for job in jobs:  # a set that was switched away from or abandoned
            _finish(plpy, job)
        plpy.commit()
        return 0
    store = p.table(embedding_set)
    distributed = distributed_store(plpy, p, embedding_set)
    ids = [job.document_id for job in jobs]
    refused: dict[str, str] = {}
    try:
        bounds = limits.read(plpy)
        provider = load_embedder(plpy, p.embedder_for(embedding_set))
        sources = fetch_sources(plpy, p, ids)
        planned = plan_documents(p, provider, sources.rows, bounds, limits.Ticker(plpy),
                                 refused)
        known = reusable_vectors(plpy, store, [h for d in planned for h in d.hashes])
        lease = Lease(plpy, jobs, lease_seconds, provider)
        lease.renew()  # commits: no transaction stays open while the provider works
        vectors, embedded = compute_vectors(provider, planned, known,
                                            bounds.embed_batch_texts, lease.renew)
    except SourceUnreadable as exc:
        return _set_aside(plpy, p, jobs, str(exc))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the jobs
        error = _as_embedder_error(exc)
        plpy.rollback()
        _fail(plpy, p, jobs, error)
        plpy.commit()
        return 0

    # Documents whose chunks another transaction is writing (a sync pipeline's writer, even
    # one whose transaction was PREPAREd and forgotten) are left for later, not waited for;
    # the rows are read after that, so what is written is what they hold now.
    free = claim_documents(plpy, store, ids)
    try:
        current = fetch_sources(plpy, p, ids)  # a TRUNCATE waits for us here
    except SourceUnreadable as exc:
        return _set_aside(plpy, p, jobs, str(exc))
    owned = _owned(plpy, jobs)
    by_id = {doc.document_id: doc for doc in planned}
    stored = stored_chunks(plpy, store, ids)
    fresh = {d for d, v in vectors.items() if known.get(d) is not v}
    # (A lock pgask's claim does not cover, such as a chunk row of a DDL in flight, is not
    # waited for long either.)
    plpy.execute(prepared(plpy, "SELECT set_config('lock_timeout', '2s', true)", []))
    done = stale = 0
    for job in jobs:
        doc = by_id.get(job.document_id)
        problem = current.problems.get(job.document_id)
        if job.id not in owned:
            stale += 1  # our lease expired and another worker took the job over
        elif job.document_id not in free:
            _defer(plpy, job)  # its chunks are being written elsewhere: later
        elif problem is not None:
            # This row's own values fail the pipeline's SQL: it alone is a dead letter, with
            # its own error (it is queued again when it changes).
            _fail(plpy, p, [job], EmbedderError(f"row {job.document_id}: {problem}",
                                                retryable=False))
        elif job.document_id not in current.rows:
            if _locked_out(plpy, lambda job=job: remove_chunks(plpy, store, job.document_id,
                                                               distributed)):
                _defer(plpy, job)
                continue
            _finish(plpy, job)  # the row is gone, and now its chunks
        elif job.document_id in refused and current.rows[job.document_id] == sources.rows.get(
                job.document_id):
            # Over a bound: retrying cannot help until the row changes (which re-queues it).
            _fail(plpy, p, [job], EmbedderError(refused[job.document_id], retryable=False))
        elif doc is None or current.rows[job.document_id] != doc.source_state:
            stale += 1  # changed while we embedded: the newer version is queued already
            _release(plpy, job, count_attempt=False)
        else:
            if not unchanged(doc, stored.get(job.document_id), fresh) and _locked_out(
                    plpy, lambda doc=doc: write_chunks(plpy, store, doc, vectors, distributed)):
                _defer(plpy, job)
                continue
            _finish(plpy, job)
            done += 1
    reused = sum(len(doc.hashes) for doc in planned) - embedded
    _add_stats(plpy, p.name, done, embedded, reused, stale)
    fold_statistics(plpy, {p.store_name(embedding_set)})
    plpy.commit()
    return done


def _locked_out(plpy, write) -> bool:
    """Runs `write` in a subtransaction; True (and nothing written) when it waited longer
    than lock_timeout for rows another transaction holds, or met chunks another one wrote
    meanwhile (a unique violation): the document is left for later."""
    try:
        with plpy.subtransaction():
            write()
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) in ("55P03", "23505"):
            return True
        raise
    return False


# How long a job whose document is busy elsewhere waits before a worker takes it again.
BUSY_RETRY_SECONDS = 10


def _defer(plpy, job: Job) -> None:
    """The job goes back to the queue for later, its attempt not counted."""
    plpy.execute(prepared(plpy,
        "UPDATE rag.queue SET not_before = now() + make_interval(secs => $3)"
        " WHERE id = $1 AND generation = $2", ["bigint", "bigint", "float8"]),
        [job.id, job.generation, BUSY_RETRY_SECONDS])
    _release(plpy, job, count_attempt=False)


def switch_finished_reembeds(plpy, pipeline: str | None) -> None:
    """Pipelines whose new embedding set has no queued rows left switch to it, atomically."""
    rows = plpy.execute(prepared(plpy,
        "SELECT p.name FROM rag.pipelines AS p WHERE p.building_set IS NOT NULL"
        " AND ($1::text IS NULL OR p.name = $1) AND NOT EXISTS (SELECT 1 FROM rag.queue AS q"
        " WHERE q.pipeline = p.name AND q.embedding_set = p.building_set) AND NOT EXISTS"
        " (SELECT 1 FROM rag.inbox AS i WHERE i.pipeline = p.name)", ["text"]),
        [pipeline])
    for row in rows:
        plpy.execute(prepared(plpy, "SELECT rag._switch_set($1)", ["text"]), [row["name"]])
        plpy.commit()


class _Pinned:
    """plpy for rag.process_queue, which commits and so cannot carry SET clauses: at the
    start and after every commit and rollback, the search_path is pinned to pg_catalog,
    pg_temp (no SQL here resolves a name through the caller's search_path), and the role
    becomes pgask_worker when the session may (a worker connected as a superuser then does
    pgask's work with a worker's rights only)."""

    PIN = ("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),"
           " CASE WHEN pg_catalog.pg_has_role(session_user, 'pgask_worker', 'MEMBER')"
           " THEN pg_catalog.set_config('role', 'pgask_worker', true) END")

    def __init__(self, plpy) -> None:
        self._plpy = plpy
        plpy.execute(self.PIN)

    def __getattr__(self, name):
        return getattr(self._plpy, name)

    def commit(self) -> None:
        self._plpy.commit()
        self._plpy.execute(self.PIN)

    def rollback(self) -> None:
        self._plpy.rollback()
        self._plpy.execute(self.PIN)


def process_queue(plpy, pipeline, batch_size: int, max_seconds: float,
                  lease_seconds: float) -> int:
    plpy = _Pinned(plpy)
    deadline = time.monotonic() + max_seconds
    processed = 0
    owner = new_owner()
    while True:
        drain_inbox(plpy, pipeline)
        jobs = claim(plpy, pipeline, batch_size, lease_seconds, owner)
        plpy.commit()
        if not jobs:
            break
        groups: dict[tuple[str, int], list[Job]] = {}
        for job in jobs:
            groups.setdefault((job.pipeline, job.embedding_set), []).append(job)
        for (name, embedding_set), group in groups.items():
            processed += process_group(plpy, name, embedding_set, group, lease_seconds)
        if time.monotonic() >= deadline:
            break
    fold_pending(plpy)
    switch_finished_reembeds(plpy, pipeline)
    return processed


def fold_pending(plpy) -> None:
    """Folds the BM25 deltas that chunk writers outside this call (sync pipelines' writers,
    other workers) left, so that readers add few rows; commits."""
    plpy.execute("SELECT rag._bm25_fold(d.store) FROM (SELECT DISTINCT store"
                 " FROM rag.bm25_stat_deltas) AS d")
    plpy.commit()


NOT_TOP_LEVEL = (
    "rag.process_queue commits after every batch, so it cannot run inside a transaction "
    "block (BEGIN ..., a function, or several statements sent as one query string); run "
    "CALL rag.process_queue() on its own, in autocommit mode")


def process_queue_call(plpy, pipeline, batch_size: int, max_seconds: float,
                       lease_seconds: float) -> tuple[int | None, str | None, str | None]:
    """rag._process_queue's body: (processed, NULL, NULL), or (NULL, sqlstate, message) for
    the plpgsql wrapper to raise, so no Python traceback reaches the caller."""
    try:
        plpy.commit()  # refused at once inside a transaction block, before any work
    except plpy.SPIError:
        return None, "25001", NOT_TOP_LEVEL
    # The worker's transactions are READ COMMITTED whatever the session's default: in
    # SERIALIZABLE they would join the users' conflict tracking, and a user's commit could
    # fail because of them. The session's default comes back at the end.
    previous = plpy.execute("SELECT pg_catalog.current_setting('default_transaction_isolation')"
                            " AS v")[0]["v"]
    plpy.execute("SELECT pg_catalog.set_config('default_transaction_isolation',"
                 " 'read committed', false)")
    plpy.commit()
    try:
        return process_queue(plpy, pipeline, batch_size, max_seconds, lease_seconds), None, None
    except plpy.SPIError as exc:
        return None, getattr(exc, "sqlstate", None) or "XX000", f"rag.process_queue: {exc}"
    except Exception as exc:  # noqa: BLE001 - a bug still gets the one error shape
        return None, "XX000", f"rag.process_queue: {type(exc).__name__}: {exc}"
    finally:
        plpy.execute(plpy.prepare("SELECT pg_catalog.set_config("
                                  "'default_transaction_isolation', $1, false)", ["text"]),
                     [previous])


def process_now(plpy, pipeline_name: str, ids: list[str]) -> list[str]:
    """Sync mode: embed inside the writer's transaction, and return the keys left for
    rag.process_queue: rows that are gone (the worker removes their chunks), rows whose own
    values fail the pipeline's SQL or exceed a bound of rag.settings (the worker records
    why), keys over rag._max_key_bytes() (a dead letter too), rows past sync_max_rows,
    documents whose chunks another transaction is writing (claim_documents), and everything
    once half of statement_timeout is spent. Any failure raises: the capture function
    catches it, so the write goes through with every key still queued. Statistics are the
    workers' to fold, and rag.pipeline_stats theirs to count: no row that two writers would
    both update."""
    p = pipelines.load(plpy, pipeline_name)
    bounds = limits.read(plpy)
    # A key over rag._max_key_bytes() would fail the chunk table's index: the worker's move
    # makes it a dead letter that says so, and the other rows are processed here.
    too_long = {i for i in ids if len(i.encode()) > _max_key_bytes(plpy)}
    ids = sorted(set(ids) - too_long)
    # sync_max_rows bounds the transaction, not only the statement: each row processed
    # holds a claim (an advisory lock) until the writer commits.
    budget = max(bounds.sync_max_rows - _sync_rows_so_far(plpy), 0)
    left = set(ids[budget:]) | too_long
    ids = ids[:budget]
    _SYNC_ROWS["count"] += len(ids)
    if not ids or _past_half_of_statement_timeout(plpy):
        return sorted(left | set(ids))
    sources = fetch_sources(plpy, p, ids)
    left |= {i for i in ids if i not in sources.rows}
    for embedding_set in (p.active_set, p.building_set):
        if embedding_set is None:
            continue
        if _past_half_of_statement_timeout(plpy):
            return sorted(left | set(sources.rows))
        store = p.table(embedding_set)
        free = claim_documents(plpy, store, list(sources.rows))
        left |= set(sources.rows) - free
        rows = {i: r for i, r in sources.rows.items() if i in free}
        refused: dict[str, str] = {}
        provider = load_embedder(plpy, p.embedder_for(embedding_set))
        planned = plan_documents(p, provider, rows, bounds, limits.Ticker(plpy), refused)
        known = reusable_vectors(plpy, store, [h for d in planned for h in d.hashes])
        vectors, _ = compute_vectors(provider, planned, known)
        distributed = distributed_store(plpy, p, embedding_set)
        stored = stored_chunks(plpy, store, [doc.document_id for doc in planned])
        fresh = {d for d, v in vectors.items() if known.get(d) is not v}
        for doc in planned:
            if not unchanged(doc, stored.get(doc.document_id), fresh):
                write_chunks(plpy, store, doc, vectors, distributed)
        left |= set(refused)
    return sorted(left)


# Rows processed in the writer's current transaction by sync pipelines (process_now).
_SYNC_ROWS: dict = {"xact": None, "count": 0}
# rag._max_key_bytes(), a constant: read once per backend.
_KEY_BYTES: dict = {}


def _max_key_bytes(plpy) -> int:
    if "max" not in _KEY_BYTES:
        _KEY_BYTES["max"] = plpy.execute("SELECT rag._max_key_bytes() AS m")[0]["m"]
    return _KEY_BYTES["max"]


def _sync_rows_so_far(plpy) -> int:
    xact = plpy.execute(prepared(plpy, "SELECT pg_current_xact_id()::text AS x", []))[0]["x"]
    if _SYNC_ROWS["xact"] != xact:
        _SYNC_ROWS.update(xact=xact, count=0)
    return _SYNC_ROWS["count"]


def _past_half_of_statement_timeout(plpy) -> bool:
    """Whether the writer's statement has used half its statement_timeout (none: never):
    sync processing then leaves the rest to the workers rather than fail the write."""
    row = plpy.execute(prepared(plpy,
        "SELECT setting::float8 AS limit_ms,"
        " (1000 * extract(epoch FROM clock_timestamp() - statement_timestamp()))::float8 AS used_ms"
        " FROM pg_settings WHERE name = 'statement_timeout'", []))[0]
    return row["limit_ms"] > 0 and row["used_ms"] * 2 >= row["limit_ms"]
