-- Pipelines: any table's rows chunked and embedded into a chunk store of its own, kept fresh
-- through a transactional queue. Embedders are rows of a registry; a pipeline pins one.
-- rag.documents becomes the pipeline "documents"; its old chunk table is replaced.

CREATE TABLE rag.embedders (
    name text PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('local', 'openai')),
    model text NOT NULL,
    dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    base_url text,
    -- The name of an environment variable of the server, or 'secret:NAME' for a row of
    -- rag.secrets; never the key itself.
    api_key_env text,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys for providers, readable only by the owner of the schema (the installing role);
-- the SECURITY DEFINER function rag._secret() reads them for the embedding code.
CREATE TABLE rag.secrets (
    name text PRIMARY KEY,
    value text NOT NULL
);
REVOKE ALL ON rag.secrets FROM public;

CREATE TABLE rag.pipelines (
    name text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    source regclass NOT NULL,
    mode text NOT NULL CHECK (mode IN ('async', 'sync')),
    -- SQL fragments over the source row aliased "s", built from quoted identifiers when the
    -- pipeline is created; content may be a user-supplied expression.
    key_sql text NOT NULL,
    key_join_sql text NOT NULL,
    content_sql text NOT NULL,
    title_sql text NOT NULL,
    metadata_sql text NOT NULL,
    chunker jsonb NOT NULL,
    embedder text NOT NULL REFERENCES rag.embedders (name),
    -- Pinned at creation (and by rag.reembed): queries must use this model and dimension.
    embedding_model text NOT NULL,
    dimensions integer NOT NULL,
    active_set integer NOT NULL DEFAULT 1,
    -- Blue/green re-embedding: the set being built and the embedder it is built with.
    building_set integer,
    building_embedder text REFERENCES rag.embedders (name),
    -- Failed jobs wait retry_base_seconds * 2^(attempt - 1), with full jitter, at most
    -- retry_max_seconds (or what a 429's Retry-After asks); after max_attempts they are dead.
    max_attempts integer NOT NULL DEFAULT 6 CHECK (max_attempts >= 1),
    retry_base_seconds double precision NOT NULL DEFAULT 10 CHECK (retry_base_seconds >= 0),
    retry_max_seconds double precision NOT NULL DEFAULT 3600 CHECK (retry_max_seconds >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per source row that needs (re)processing into one embedding set. Successful jobs
-- are deleted; failed ones stay with their error (dead letter). generation counts re-enqueues,
-- so a worker finishing an older generation does not delete the newer request.
CREATE TABLE rag.queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline text NOT NULL REFERENCES rag.pipelines (name) ON DELETE CASCADE,
    embedding_set integer NOT NULL,
    document_id text NOT NULL,
    generation bigint NOT NULL DEFAULT 1,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    not_before timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    lease_owner text,
    last_error text,
    last_attempt_at timestamptz,
    CONSTRAINT queue_job_key UNIQUE (pipeline, embedding_set, document_id)
);

CREATE INDEX queue_ready ON rag.queue (not_before) WHERE status = 'pending';

-- Running totals for rag.pipeline_status: finished jobs are deleted from the queue.
CREATE TABLE rag.pipeline_stats (
    pipeline text PRIMARY KEY REFERENCES rag.pipelines (name) ON DELETE CASCADE,
    done bigint NOT NULL DEFAULT 0,
    chunks_embedded bigint NOT NULL DEFAULT 0,
    chunks_reused bigint NOT NULL DEFAULT 0,
    stale_discarded bigint NOT NULL DEFAULT 0,
    last_done_at timestamptz
);

DROP TRIGGER IF EXISTS documents_index ON rag.documents;
DROP TABLE rag.chunks;
