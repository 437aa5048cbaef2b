-- Retrieval: BM25 keyword search next to vector search, per-pipeline search settings,
-- rerankers as data, and what roles other than the owner need to search.
-- The chunk tables get their keyword columns from rag._sync_keyword_index (sql/pipelines.sql),
-- which every install runs for every pipeline.

-- language: the text search configuration of the pipeline's keyword index (to_tsvector).
-- search_options: defaults for rag.search's options (bm25_k1, bm25_b, rrf_k, weights, ...).
ALTER TABLE rag.pipelines
ADD COLUMN language regconfig NOT NULL DEFAULT 'english',
ADD COLUMN search_options jsonb NOT NULL DEFAULT '{}'::jsonb;

-- BM25 statistics per chunk table: how many chunks contain each lexeme (df), how many chunks
-- there are and their total length in lexemes. Kept current by triggers on the chunk tables,
-- in the transaction that writes the chunks.
CREATE TABLE rag.bm25_terms (
    store text NOT NULL,
    lexeme text NOT NULL,
    df integer NOT NULL,
    PRIMARY KEY (store, lexeme)
);

CREATE TABLE rag.bm25_stats (
    store text PRIMARY KEY,
    language regconfig NOT NULL,
    chunks bigint NOT NULL DEFAULT 0,
    total_length bigint NOT NULL DEFAULT 0
);

-- Second-stage rerankers: an HTTP endpoint of the common /rerank shape (Cohere, Jina, TEI,
-- vLLM) or the local one. api_key_env as for rag.embedders: a variable name or 'secret:NAME'.
CREATE TABLE rag.rerankers (
    name text PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('local', 'cohere', 'tei')),
    model text,
    base_url text,
    api_key_env text,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Searching is for every role that can read a pipeline's source table (chunk tables mirror
-- its SELECT grants and row-level security). The registries hold no secrets.
GRANT USAGE ON SCHEMA rag TO public;
GRANT SELECT ON rag.settings, rag.pipelines, rag.embedders, rag.rerankers TO public;
