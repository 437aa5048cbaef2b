-- Status views: the queue per pipeline, and rows that failed for good.

-- rag.pipeline_status: one row per pipeline. pending: waiting (or backing off); leased: being
-- processed now; failed: dead letters; done: rows finished since creation; lag_seconds: age
-- of the oldest pending row; reembed_remaining: rows left before a rag.reembed switches.
CREATE OR REPLACE VIEW rag.pipeline_status AS
SELECT
    p.name AS pipeline,
    p.source::text AS source,
    p.mode,
    p.embedder,
    p.embedding_model,
    p.dimensions,
    coalesce(st.done, 0) AS done,
    coalesce(st.chunks_embedded, 0) AS chunks_embedded,
    coalesce(st.chunks_reused, 0) AS chunks_reused,
    coalesce(st.stale_discarded, 0) AS stale_discarded,
    st.last_done_at,
    p.building_embedder AS reembedding_to,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE
            q.pipeline = p.name AND q.status = 'pending'
            AND (q.leased_until IS NULL OR q.leased_until < now())
    ) AS pending,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'pending' AND q.leased_until >= now()
    ) AS leased,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'failed'
    ) AS failed,
    (
        SELECT extract(EPOCH FROM now() - min(q.enqueued_at)) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.status = 'pending'
    ) AS lag_seconds,
    (
        SELECT q.last_error FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.last_error IS NOT NULL
        ORDER BY q.last_attempt_at DESC NULLS LAST LIMIT 1
    ) AS last_error,
    (
        SELECT count(*) FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.embedding_set = p.building_set
    ) AS reembed_remaining
FROM rag.pipelines AS p
LEFT JOIN rag.pipeline_stats AS st ON p.name = st.pipeline;

-- rag.dead_letters: rows that failed max_attempts times (or with an error that retrying
-- cannot fix), with the last error. rag.retry_failed() queues them again.
CREATE OR REPLACE VIEW rag.dead_letters AS
SELECT
    q.pipeline,
    q.document_id,
    q.embedding_set,
    q.attempts,
    q.last_error,
    q.last_attempt_at,
    q.enqueued_at
FROM rag.queue AS q
WHERE q.status = 'failed';
