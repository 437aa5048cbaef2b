-- The capture inbox: what async pipelines' triggers write, in the writer's transaction.
--
-- A write used to upsert its job into rag.queue (ON CONFLICT on queue_job_key, a foreign key
-- to rag.pipelines, two indexes): the speculative insertion alone cost a single-row INSERT
-- ~0.14x of a plain one (scripts/measure_insert_floor.py). The inbox is append-only, with no
-- key, index or reference, so a write pays one heap insert. rag.process_queue moves its rows
-- into rag.queue (rag._drain_inbox) before claiming jobs; repeated writes of one row become one
-- job there, as before.
CREATE TABLE rag.queue_inbox (
    pipeline text NOT NULL,
    embedding_set integer NOT NULL,
    document_id text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
