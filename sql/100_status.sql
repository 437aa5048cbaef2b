-- Status views: the queue per pipeline, and rows that failed for good.

-- rag.pipeline_status: one row per pipeline. pending: waiting (or backing off), including
-- keys of writes captured in rag.inbox and not yet moved into the queue (a request to
-- check every row, such as a new pipeline's backfill, counts as one until a worker expands
-- it; a re-embed's check of its new set, as none); leased: being
-- processed now; failed: dead letters; done: rows finished since creation; lag_seconds: age
-- of the oldest pending row; reembed_remaining: rows left before a rag.reembed switches;
-- broken: why the pipeline cannot run (its source table or a column it uses was dropped),
-- NULL when it is healthy (rag.alter_pipeline repairs what it can); degraded_answers_1h:
-- answers of the last hour (every role's) whose passages were found by keyword search only
-- because the embedder could not embed the question, the latest one's time and reason in
-- last_degraded_at and last_degraded (NULL when none in the last hour).
CREATE OR REPLACE VIEW rag.pipeline_status AS
SELECT
    p.name AS pipeline,
    CASE
        WHEN p.broken IS NULL THEN p.source::text ELSE coalesce(p.source_name, p.source::text)
    END AS source,
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
        -- Captured writes not yet moved into rag.queue count once per key and set.
        SELECT count(*) FROM (
            SELECT
                q.embedding_set,
                q.document_id
            FROM rag.queue AS q
            WHERE
                q.pipeline = p.name AND q.status = 'pending'
                AND (q.leased_until IS NULL OR q.leased_until < now())
            UNION
            SELECT
                s.embedding_set,
                coalesce(k.document_id, 'every row: ' || i.scope) AS document_id
            FROM rag.inbox AS i
            CROSS JOIN
                LATERAL unnest(coalesce(i.document_ids, ARRAY[NULL::text])) AS k (document_id)
            CROSS JOIN
                unnest(
                    array_remove(ARRAY[p.active_set, p.building_set], NULL)
                ) AS s (embedding_set)
            WHERE i.pipeline = p.name AND i.scope IS DISTINCT FROM 'building'
        ) AS waiting
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
        SELECT extract(EPOCH FROM now() - min(w.enqueued_at))::double precision FROM (
            SELECT q.enqueued_at FROM rag.queue AS q
            WHERE q.pipeline = p.name AND q.status = 'pending'
            UNION ALL
            SELECT i.enqueued_at FROM rag.inbox AS i
            WHERE i.pipeline = p.name
        ) AS w
    ) AS lag_seconds,
    (
        SELECT q.last_error FROM rag.queue AS q
        WHERE q.pipeline = p.name AND q.last_error IS NOT NULL
        ORDER BY q.last_attempt_at DESC NULLS LAST LIMIT 1
    ) AS last_error,
    (
        SELECT count(*) FROM (
            SELECT q.document_id FROM rag.queue AS q
            WHERE q.pipeline = p.name AND q.embedding_set = p.building_set
            UNION
            SELECT coalesce(k.document_id, 'every row: ' || i.scope) AS document_id
            FROM rag.inbox AS i
            CROSS JOIN
                LATERAL unnest(coalesce(i.document_ids, ARRAY[NULL::text])) AS k (document_id)
            WHERE
                i.pipeline = p.name AND p.building_set IS NOT NULL
                AND i.scope IS DISTINCT FROM 'building'
        ) AS remaining
    ) AS reembed_remaining,
    p.broken,
    (
        SELECT count(*) FROM rag.answer_log AS l
        WHERE
            l.pipeline = p.name AND l.degraded IS NOT NULL
            AND l.asked_at > now() - interval '1 hour'
    ) AS degraded_answers_1h,
    d.asked_at AS last_degraded_at,
    d.degraded AS last_degraded
FROM rag.pipelines AS p
LEFT JOIN LATERAL (
    SELECT
        l.asked_at,
        l.degraded
    FROM rag.answer_log AS l
    WHERE
        l.pipeline = p.name AND l.degraded IS NOT NULL
        AND l.asked_at > now() - interval '1 hour'
    ORDER BY l.asked_at DESC LIMIT 1
) AS d ON TRUE
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
