-- Tables of the first slice: settings, documents and their embedded chunks.
-- Applied once by `pgask install` and recorded in rag.migrations; never edit after release.

CREATE TABLE rag.settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE rag.documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL UNIQUE,
    title text NOT NULL DEFAULT '',
    content text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rag.chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES rag.documents (id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    content text NOT NULL,
    token_count integer NOT NULL,
    -- sha256 of content: lets a later re-chunk reuse vectors of unchanged chunks.
    content_hash bytea NOT NULL,
    char_start integer NOT NULL,
    char_end integer NOT NULL,
    embedding vector(384) NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (document_id, ordinal)
);

CREATE INDEX chunks_embedding_hnsw ON rag.chunks
USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
