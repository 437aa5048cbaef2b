"""The end state every pipeline must reach at quiescence, checked from scratch: used by the
concurrency property test and by `make soak` (scripts/soak.py).

- every live source row has chunks, and each chunk is exactly the text of its span of the
  row's current content (spans ordered, not overlapping, ordinals 0..n-1, nothing but
  whitespace left between them);
- no chunk belongs to a deleted row; no duplicate (document, ordinal);
- the BM25 statistics (rag.bm25_terms, rag.bm25_stats) equal a recount from the chunks;
- the queue, and the inbox of captured writes, are empty.

Live rows' keys are read as `key::text`, which is the text pgask records for the key types
these tests use (integers, text).
"""

from __future__ import annotations

import time

import psycopg


def problems(conn: psycopg.Connection, pipeline: str, source: str, key: str = "id",
             content: str = "body") -> list[str]:
    found: list[str] = []
    (active,) = conn.execute("SELECT active_set FROM rag.pipelines WHERE name = %s",
                             (pipeline,)).fetchone()
    store = f"{pipeline}_chunks_{active}"
    live = {str(k): (v or "") for k, v in conn.execute(
        f"SELECT {key}::text, {content} FROM {source}").fetchall()}
    chunks: dict[str, list] = {}
    for document_id, ordinal, text, start, end in conn.execute(
            f'SELECT document_id, ordinal, content, char_start, char_end FROM rag."{store}"'
            " ORDER BY document_id, ordinal"):
        chunks.setdefault(document_id, []).append((ordinal, text, start, end))
    for document_id in sorted(set(chunks) - set(live)):
        found.append(f"chunks of deleted row {document_id}")
    for document_id, body in sorted(live.items()):
        rows = chunks.get(document_id, [])
        if not rows and body.strip():
            found.append(f"row {document_id} has no chunks")
            continue
        position = 0
        for expected_ordinal, (ordinal, text, start, end) in enumerate(rows):
            if ordinal != expected_ordinal:
                found.append(f"row {document_id}: ordinal {ordinal}, expected "
                             f"{expected_ordinal}")
            if body[start:end] != text:
                found.append(f"row {document_id} chunk {ordinal}: {text[:40]!r} is not "
                             f"{body[start:end][:40]!r}, its span of the current content")
            if start < position or body[position:start].strip():
                found.append(f"row {document_id} chunk {ordinal}: text before it is missing "
                             "or overlapped")
            position = end
        if body[position:].strip():
            found.append(f"row {document_id}: the end of its content is in no chunk")
    # Folded figures plus the deltas not yet folded (rag.bm25_term_stats adds them up).
    terms = dict(conn.execute(
        "SELECT lexeme, df FROM rag.bm25_term_stats WHERE store = %s AND df <> 0", (store,)))
    recount = dict(conn.execute(
        f'SELECT u.lexeme, count(*) FROM rag."{store}" AS c CROSS JOIN unnest(c.tsv) AS u'
        " GROUP BY u.lexeme"))
    if terms != recount:
        wrong = sorted(set(terms.items()) ^ set(recount.items()))[:5]
        found.append(f"bm25_terms differ from a recount, e.g. {wrong}")
    stats = conn.execute(
        "SELECT (SELECT chunks FROM rag.bm25_stats WHERE store = %(s)s)"
        " + (SELECT coalesce(sum(chunks), 0) FROM rag.bm25_stat_deltas WHERE store = %(s)s),"
        " (SELECT total_length FROM rag.bm25_stats WHERE store = %(s)s)"
        " + (SELECT coalesce(sum(total_length), 0) FROM rag.bm25_stat_deltas"
        " WHERE store = %(s)s)", {"s": store}).fetchone()
    recounted = conn.execute(f'SELECT count(*), coalesce(sum(doc_length), 0) FROM rag."{store}"'
                             ).fetchone()
    if tuple(stats or ()) != tuple(recounted):
        found.append(f"bm25_stats {stats} differ from a recount {recounted}")
    if waiting := queued(conn, pipeline):
        found.append(f"{waiting} rows still queued")
    return found


def queued(conn: psycopg.Connection, pipeline: str, status: str | None = None) -> int:
    """Jobs of the pipeline in rag.queue (with that status, if given) plus the keys of writes
    captured in rag.inbox that rag.process_queue has not yet turned into jobs (a request to
    check every row counts as one)."""
    (count,) = conn.execute(
        "SELECT (SELECT count(*) FROM rag.queue WHERE pipeline = %(p)s"
        " AND (%(s)s::text IS NULL OR status = %(s)s))"
        " + (SELECT coalesce(sum(coalesce(cardinality(document_ids), 1)), 0)"
        " FROM rag.inbox WHERE pipeline = %(p)s)",
        {"p": pipeline, "s": status}).fetchone()
    return count


def process_all(conn: psycopg.Connection, pipeline: str | None = None,
                seconds: float = 120) -> None:
    """Calls rag.process_queue until nothing is pending for the pipeline (all when None),
    backoffs included; fails with the queue's rows when that takes over `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        conn.execute("CALL rag.process_queue(%s)", (pipeline,))
        if not (queued(conn, pipeline, "pending") if pipeline else conn.execute(
                "SELECT (SELECT count(*) FROM rag.queue WHERE status = 'pending')"
                " + (SELECT count(*) FROM rag.inbox)").fetchone()[0]):
            return
        assert time.monotonic() < deadline, conn.execute("SELECT * FROM rag.queue").fetchall()
        time.sleep(0.2)
