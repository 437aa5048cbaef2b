-- Least privilege and a write that is one append (docs/security.md, docs/reliability.md).
--
-- rag.inbox: what a write to a source table records, and nothing else: the pipeline and the
-- keys of the rows the statement touched (their text in a form that no session setting
-- changes, rag._key_text_sql), one row per statement; or, with no keys, a request to
-- re-check the whole table (scope 'missing': rows without chunks and chunks without rows,
-- after a TRUNCATE, DETACH or ATTACH; 'all': every row, after a rewrite of the table). No
-- key, index, reference or check: a write pays one heap insert. rag.process_queue turns it
-- into jobs (one per row and embedding set).
CREATE TABLE rag.inbox (
    pipeline text NOT NULL,
    document_ids text[],
    scope text,
    enqueued_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

INSERT INTO rag.inbox (pipeline, document_ids, enqueued_at)
SELECT
    i.pipeline,
    pg_catalog.array_agg(DISTINCT i.document_id) AS document_ids,
    pg_catalog.min(i.enqueued_at) AS enqueued_at
FROM rag.queue_inbox AS i
GROUP BY i.pipeline;

DROP TABLE rag.queue_inbox;

-- BM25 statistics as deltas: whoever writes chunks appends what it added and removed, and
-- workers fold the deltas into rag.bm25_terms and rag.bm25_stats (rag._bm25_fold) under a
-- lock only they take. No row is updated by two writers, so concurrent chunk writers never
-- wait for each other (and REPEATABLE READ or SERIALIZABLE ones never conflict) here.
CREATE TABLE rag.bm25_term_deltas (
    store text NOT NULL,
    lexeme text NOT NULL,
    df integer NOT NULL
);
CREATE INDEX bm25_term_deltas_store ON rag.bm25_term_deltas (store, lexeme);

CREATE TABLE rag.bm25_stat_deltas (
    store text NOT NULL,
    chunks bigint NOT NULL,
    total_length bigint NOT NULL
);
CREATE INDEX bm25_stat_deltas_store ON rag.bm25_stat_deltas (store);

-- What binds a pipeline to its source (sql/075_source_binding.sql):
-- key_attnums: the primary key's columns, by number (names and types are read when needed);
-- reader: the function, owned by the source's owner, that evaluates the pipeline's SQL over
-- the source's rows, and reader_digest what it must still be (checked at every use);
-- acl_digest: the source's privileges when last mirrored onto the chunk tables.
ALTER TABLE rag.pipelines
ADD COLUMN key_attnums smallint[],
ADD COLUMN reader oid,
ADD COLUMN reader_digest text,
ADD COLUMN acl_digest text;

-- shape_digest: the source's partitions, key and used columns' types when last followed
-- (rag._source_shape): a change (ATTACH or DETACH PARTITION, a new key, a column retyped
-- without a rewrite) makes the workers check every row.
ALTER TABLE rag.pipelines ADD COLUMN shape_digest text;

-- source_schema_loans: source owners lent CREATE on schema rag_source while their reader is
-- handed to them (rag._open_source_schema); a deferred trigger revokes each loan at commit.
CREATE TABLE rag.source_schema_loans (owner_role oid NOT NULL);

-- The answer log takes rows only from pgask's answer path: each row carries a one-time token
-- that only rag.answer's code issues (rag._answer_token_ok), and each role logs at most
-- answer_log_max_per_minute answers a minute (rag._log_answer counts them by this index).
ALTER TABLE rag.answer_log ADD COLUMN answer_token text;
CREATE INDEX answer_log_asker ON rag.answer_log (asked_by, asked_at);
INSERT INTO rag.settings (key, value) VALUES ('answer_log_max_per_minute', '600')
ON CONFLICT (key) DO NOTHING;

-- A sync pipeline processes at most this many rows inside one writer's statement; the rest
-- go to the workers (pgask/limits.py has the same default).
INSERT INTO rag.settings (key, value) VALUES ('sync_max_rows', '100')
ON CONFLICT (key) DO NOTHING;

-- A stored key goes only to the servers it was stored for (rag.set_secret's base_urls; NULL:
-- the providers' own public endpoints), so no role that may register a provider can have it
-- sent to a server of its choosing.
ALTER TABLE rag.secrets ADD COLUMN base_urls text[];

-- Pipelines defined before this version have never been bound to their source: the next
-- `pgask install` binds them once, as their definition then was (admins were members of the
-- installer's role). Every later bind is made by a member of the source owner's role.
ALTER TABLE rag.pipelines ADD COLUMN bind_at_install boolean NOT NULL DEFAULT false;
UPDATE rag.pipelines SET bind_at_install = true;

-- What only pgask_owner reads: the salt of pgask's advisory lock keys, so that no other role
-- can compute, take and hold them (stalling a document, or the statistics' folding).
CREATE TABLE rag.private (key text PRIMARY KEY, value text NOT NULL);
REVOKE ALL ON rag.private FROM public;
INSERT INTO rag.private (key, value)
VALUES (
    'lock_salt',
    pg_catalog.md5(pg_catalog.random()::text || pg_catalog.clock_timestamp()::text)
);
