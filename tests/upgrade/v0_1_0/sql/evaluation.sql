-- rag.eval_summary: one row per evaluation run and mode, metrics as columns, newest first.
CREATE OR REPLACE VIEW rag.eval_summary AS
SELECT
    r.id AS run_id,
    r.kind,
    r.dataset,
    r.split,
    r.embedder,
    r.chunker,
    e.mode,
    r.queries,
    r.started_at,
    max(e.value) FILTER (WHERE e.metric = 'ndcg@10') AS ndcg_10,
    max(e.value) FILTER (WHERE e.metric = 'recall@10') AS recall_10,
    max(e.value) FILTER (WHERE e.metric = 'recall@100') AS recall_100,
    max(e.value) FILTER (WHERE e.metric = 'mrr@10') AS mrr_10,
    jsonb_object_agg(e.metric, e.value) AS metrics
FROM rag.eval_runs AS r
INNER JOIN rag.eval_results AS e ON r.id = e.run_id
GROUP BY r.id, e.mode
ORDER BY r.started_at DESC, e.mode ASC;
