-- 0014: the HTTP entry points (schema rag_api, for PostgREST and Supabase) and BI views whose
-- columns drivers map to numbers.

-- web_user: who asked (or rated) through PostgREST: the `sub` (else `email`, else `role`)
-- claim of the request's JWT, as the authenticator verified it and set it in
-- request.jwt.claims (rag._web_user); NULL for a question asked over plain SQL. An
-- attribution label within the database role (asked_by, given_by), not an authentication:
-- row-level security narrows a role's rows to the web user's, never widens them.
-- NOT VALID: the rows logged before have none, and need no scan.
ALTER TABLE rag.answer_log
ADD COLUMN web_user text,
ADD CONSTRAINT answer_log_web_user_size CHECK (
    coalesce(length(web_user), 0) <= 1000
) NOT VALID;

ALTER TABLE rag.answer_feedback
ADD COLUMN web_user text,
ADD CONSTRAINT answer_feedback_web_user_size CHECK (
    coalesce(length(web_user), 0) <= 1000
) NOT VALID;

-- The BI views' sums and averages, and pipeline_status.lag_seconds, were numeric, which
-- drivers hand over as decimals (pandas: dtype object): sql/100_status.sql and
-- sql/130_answering.sql re-create them with bigint and double precision columns. A view's
-- column types cannot change in place; a role's grants on these views go with them
-- (rag.grant_usage(role, 'dashboard') gives what a dashboard needs, at every install).
DROP VIEW IF EXISTS rag.answers_daily;
DROP VIEW IF EXISTS rag.document_usage;
DROP VIEW IF EXISTS rag.pipeline_status;
