-- Security (docs/security.md): answer-log and feedback rows belong to the role that wrote
-- them (current_user, never a value the caller supplies), and their sizes are capped, so a
-- role that may log its own answers cannot flood the log or the BI views with huge rows.
-- Row-level security, its policies and the grants are in sql/990_privileges.sql (re-applied
-- by every install). NOT VALID: rows logged before this release are not re-checked.

ALTER TABLE rag.answer_log ALTER COLUMN asked_by SET DEFAULT current_user;

ALTER TABLE rag.answer_log ADD CONSTRAINT answer_log_sizes CHECK (
    length(pipeline) <= 64
    AND length(question) <= 10000
    AND length(answer) <= 100000
    AND coalesce(length(model), 0) <= 200
    AND coalesce(length(llm), 0) <= 200
    AND coalesce(length(error), 0) <= 10000
    AND coalesce(length(currency), 0) <= 10
    AND cardinality(problems) <= 100
    AND cardinality(retrieved_chunk_ids) <= 1000
    AND cardinality(retrieved_scores) <= 1000
    AND cardinality(cited_chunk_ids) <= 1000
    AND cardinality(cited_document_ids) <= 1000
    AND cardinality(cited_sources) <= 1000
    AND pg_column_size(problems) + pg_column_size(cited_document_ids)
    + pg_column_size(cited_sources) <= 1000000
    AND pg_column_size(timings_ms) <= 10000
) NOT VALID;

ALTER TABLE rag.answer_feedback ALTER COLUMN given_by SET DEFAULT current_user;

ALTER TABLE rag.answer_feedback ADD CONSTRAINT answer_feedback_sizes CHECK (
    coalesce(length(comment), 0) <= 10000
) NOT VALID;
