-- 0013: searches and answers degrade, not fail, when the embedding provider is down.

-- degraded: why the answer's passages were found by keyword search (BM25) only (the
-- pipeline's embedder could not embed the question); NULL when hybrid search ran.
-- NOT VALID: the rows logged before have none, and need no scan.
ALTER TABLE rag.answer_log
ADD COLUMN degraded text,
ADD CONSTRAINT answer_log_degraded_size CHECK (
    coalesce(length(degraded), 0) <= 10000
) NOT VALID;

-- A query's embedding waits less than a worker's (pgask/retrieval/query_embedding.py);
-- pgask/limits.py holds the same defaults for a missing row.
INSERT INTO rag.settings (key, value) VALUES
('query_embed_timeout_ms', '1000'),
('query_embed_budget_ms', '2000'),
('query_breaker_failures', '3'),
('query_breaker_cooldown_seconds', '10')
ON CONFLICT (key) DO NOTHING;
