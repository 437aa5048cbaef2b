-- What each view and its columns mean, in the catalog, where BI tools (Grafana, Metabase,
-- Superset, SQLAlchemy's inspector) show it. tests/integration/test_bi.py fails on a view of
-- schema rag without a comment, or a column of the views below without one. The queries of a
-- dashboard over these views: docs/dashboard.md.

COMMENT ON VIEW rag.pipeline_status IS
'One row per pipeline: its source, embedder, queue (pending, leased, failed), lag and health';
COMMENT ON COLUMN rag.pipeline_status.pipeline IS 'pipeline name (rag.create_pipeline)';
COMMENT ON COLUMN rag.pipeline_status.source IS 'source table (its last name if dropped)';
COMMENT ON COLUMN rag.pipeline_status.mode IS 'async (a worker embeds) or sync (on write)';
COMMENT ON COLUMN rag.pipeline_status.embedder IS 'embedder name (rag.embedders)';
COMMENT ON COLUMN rag.pipeline_status.embedding_model IS 'model of the embedder';
COMMENT ON COLUMN rag.pipeline_status.dimensions IS 'vector dimensions';
COMMENT ON COLUMN rag.pipeline_status.done IS 'rows processed since the pipeline was created';
COMMENT ON COLUMN rag.pipeline_status.chunks_embedded IS 'chunks embedded (provider calls)';
COMMENT ON COLUMN rag.pipeline_status.chunks_reused IS
'chunks whose unchanged text kept its embedding';
COMMENT ON COLUMN rag.pipeline_status.stale_discarded IS
'embeddings discarded because the row changed meanwhile';
COMMENT ON COLUMN rag.pipeline_status.last_done_at IS 'when a row was last processed';
COMMENT ON COLUMN rag.pipeline_status.reembedding_to IS
'embedder a rag.reembed is building, NULL when none';
COMMENT ON COLUMN rag.pipeline_status.pending IS
'rows waiting (captured writes included) to be processed';
COMMENT ON COLUMN rag.pipeline_status.leased IS 'rows being processed now';
COMMENT ON COLUMN rag.pipeline_status.failed IS 'dead letters (rag.dead_letters)';
COMMENT ON COLUMN rag.pipeline_status.lag_seconds IS 'age of the oldest pending row, seconds';
COMMENT ON COLUMN rag.pipeline_status.last_error IS 'latest processing error';
COMMENT ON COLUMN rag.pipeline_status.reembed_remaining IS
'rows left before a rag.reembed switches';
COMMENT ON COLUMN rag.pipeline_status.broken IS
'why the pipeline cannot run, NULL when healthy';
COMMENT ON COLUMN rag.pipeline_status.degraded_answers_1h IS
'answers of the last hour found by keyword search only (embedder down)';
COMMENT ON COLUMN rag.pipeline_status.last_degraded_at IS
'time of the latest degraded answer of the last hour';
COMMENT ON COLUMN rag.pipeline_status.last_degraded IS
'why the latest degraded answer of the last hour was degraded';

COMMENT ON VIEW rag.dead_letters IS
'Source rows that failed for good, with the last error; rag.retry_failed() queues them again';
COMMENT ON COLUMN rag.dead_letters.pipeline IS 'pipeline name';
COMMENT ON COLUMN rag.dead_letters.document_id IS 'key of the source row';
COMMENT ON COLUMN rag.dead_letters.embedding_set IS 'embedding set (changes with rag.reembed)';
COMMENT ON COLUMN rag.dead_letters.attempts IS 'attempts made';
COMMENT ON COLUMN rag.dead_letters.last_error IS 'error of the last attempt';
COMMENT ON COLUMN rag.dead_letters.last_attempt_at IS 'when it was last tried';
COMMENT ON COLUMN rag.dead_letters.enqueued_at IS 'when it was queued';

COMMENT ON VIEW rag.bm25_term_stats IS
'Keyword-search statistics per chunk table and lexeme (internal to rag.search)';
COMMENT ON COLUMN rag.bm25_term_stats.store IS 'chunk table';
COMMENT ON COLUMN rag.bm25_term_stats.lexeme IS 'lexeme';
COMMENT ON COLUMN rag.bm25_term_stats.df IS 'chunks holding the lexeme';
COMMENT ON COLUMN rag.bm25_term_stats.chunks IS 'chunks in the table';
COMMENT ON COLUMN rag.bm25_term_stats.total_length IS 'lexemes in the table, all chunks';

COMMENT ON VIEW rag.answer_feedback_totals IS
'Helpful and unhelpful verdicts (rag.feedback) per answer, those the reader may see';
COMMENT ON COLUMN rag.answer_feedback_totals.answer_id IS 'rag.answer_log.id';
COMMENT ON COLUMN rag.answer_feedback_totals.helpful IS 'verdicts "helpful"';
COMMENT ON COLUMN rag.answer_feedback_totals.unhelpful IS 'verdicts "not helpful"';

COMMENT ON VIEW rag.answers_daily IS
'Answers per day and pipeline: modes, latency, tokens, cost, feedback; rows the reader may '
'see (rag.grant_usage(role, ''dashboard'') for all)';
COMMENT ON COLUMN rag.answers_daily.day IS 'day asked (server time zone)';
COMMENT ON COLUMN rag.answers_daily.pipeline IS 'pipeline searched';
COMMENT ON COLUMN rag.answers_daily.answers IS 'answers given';
COMMENT ON COLUMN rag.answers_daily.generated IS 'answers written by an LLM';
COMMENT ON COLUMN rag.answers_daily.extractive IS 'answers quoted from passages (no LLM)';
COMMENT ON COLUMN rag.answers_daily.no_answer IS '"I don''t know" answers';
COMMENT ON COLUMN rag.answers_daily.ungrounded IS 'LLM answers the grounding check caught';
COMMENT ON COLUMN rag.answers_daily.llm_errors IS 'answers logged with an LLM error';
COMMENT ON COLUMN rag.answers_daily.avg_ms IS 'mean latency, milliseconds';
COMMENT ON COLUMN rag.answers_daily.p95_ms IS '95th percentile latency, milliseconds';
COMMENT ON COLUMN rag.answers_daily.prompt_tokens IS 'LLM prompt tokens';
COMMENT ON COLUMN rag.answers_daily.completion_tokens IS 'LLM completion tokens';
COMMENT ON COLUMN rag.answers_daily.cost IS
'LLM cost (rag.llm_prices; currency in rag.answer_log), NULL without prices';
COMMENT ON COLUMN rag.answers_daily.helpful IS 'verdicts "helpful" on these answers';
COMMENT ON COLUMN rag.answers_daily.unhelpful IS 'verdicts "not helpful" on these answers';
COMMENT ON COLUMN rag.answers_daily.degraded IS
'answers found by keyword search only (embedder down)';

COMMENT ON VIEW rag.top_unanswered IS
'Questions answered "I don''t know", most asked first: the gaps in the documents';
COMMENT ON COLUMN rag.top_unanswered.pipeline IS 'pipeline searched';
COMMENT ON COLUMN rag.top_unanswered.question IS 'question, lower case, spaces folded';
COMMENT ON COLUMN rag.top_unanswered.times_asked IS 'times asked';
COMMENT ON COLUMN rag.top_unanswered.askers IS 'distinct database roles that asked';
COMMENT ON COLUMN rag.top_unanswered.first_asked IS 'first asked';
COMMENT ON COLUMN rag.top_unanswered.last_asked IS 'last asked';

COMMENT ON VIEW rag.document_usage IS
'Documents cited in answers: how often, by how many questions, with their feedback';
COMMENT ON COLUMN rag.document_usage.pipeline IS 'pipeline searched';
COMMENT ON COLUMN rag.document_usage.document_id IS 'key of the cited source row';
COMMENT ON COLUMN rag.document_usage.source IS 'source of the document (path, URL)';
COMMENT ON COLUMN rag.document_usage.answers IS 'answers citing it';
COMMENT ON COLUMN rag.document_usage.questions IS 'distinct questions citing it';
COMMENT ON COLUMN rag.document_usage.helpful_feedback IS
'verdicts "helpful" on answers citing it';
COMMENT ON COLUMN rag.document_usage.unhelpful_feedback IS
'verdicts "not helpful" on answers citing it';
COMMENT ON COLUMN rag.document_usage.last_cited IS 'last cited';

COMMENT ON VIEW rag.eval_summary IS
'Evaluation runs (pgask eval), one row per run and search mode, newest first';
COMMENT ON COLUMN rag.eval_summary.run_id IS 'rag.eval_runs.id';
COMMENT ON COLUMN rag.eval_summary.kind IS 'kind of run';
COMMENT ON COLUMN rag.eval_summary.dataset IS 'question set';
COMMENT ON COLUMN rag.eval_summary.split IS 'split of the set';
COMMENT ON COLUMN rag.eval_summary.embedder IS 'embedder evaluated';
COMMENT ON COLUMN rag.eval_summary.chunker IS 'chunker settings evaluated';
COMMENT ON COLUMN rag.eval_summary.mode IS 'search mode (hybrid, vector, keyword)';
COMMENT ON COLUMN rag.eval_summary.queries IS 'questions asked';
COMMENT ON COLUMN rag.eval_summary.started_at IS 'when the run started';
COMMENT ON COLUMN rag.eval_summary.ndcg_10 IS 'nDCG@10';
COMMENT ON COLUMN rag.eval_summary.recall_10 IS 'recall@10';
COMMENT ON COLUMN rag.eval_summary.recall_100 IS 'recall@100';
COMMENT ON COLUMN rag.eval_summary.mrr_10 IS 'MRR@10';
COMMENT ON COLUMN rag.eval_summary.metrics IS 'every metric of the run, by name';
