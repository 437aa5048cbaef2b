-- Answers: LLMs as data, per-pipeline answer settings, and the answer log behind the BI views.

-- Chat models for generated answers: any OpenAI-compatible /chat/completions endpoint.
-- api_key_env as for rag.embedders: a variable name or 'secret:NAME', never the key.
CREATE TABLE rag.llms (
    name text PRIMARY KEY,
    provider text NOT NULL CHECK (provider IN ('openai', 'azure')),
    model text NOT NULL,
    base_url text NOT NULL,
    api_key_env text,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Prices per million tokens, for the cost column of rag.answer_log. Filled by the user:
-- prices change, and pgask does not guess them.
CREATE TABLE rag.llm_prices (
    model text PRIMARY KEY,
    prompt_per_million numeric NOT NULL CHECK (prompt_per_million >= 0),
    completion_per_million numeric NOT NULL CHECK (completion_per_million >= 0),
    currency text NOT NULL DEFAULT 'USD'
);

-- answer_options: per-pipeline defaults of rag.answer (llm, prompt template, guard, ...).
ALTER TABLE rag.pipelines ADD COLUMN answer_options jsonb NOT NULL DEFAULT '{}'::jsonb;

-- One row per rag.answer call, written by the SECURITY DEFINER rag._log_answer so that any
-- role can ask; readable by the owner (and whoever the owner grants the BI views to).
CREATE TABLE rag.answer_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asked_at timestamptz NOT NULL DEFAULT now(),
    asked_by name NOT NULL,
    pipeline text NOT NULL,
    question text NOT NULL,
    answer text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('generated', 'extractive', 'no_answer')),
    model text,
    llm text,
    grounded boolean NOT NULL,
    problems text[] NOT NULL DEFAULT '{}',
    retrieved_chunk_ids bigint[] NOT NULL DEFAULT '{}',
    retrieved_scores double precision[] NOT NULL DEFAULT '{}',
    cited_chunk_ids bigint[] NOT NULL DEFAULT '{}',
    cited_document_ids text[] NOT NULL DEFAULT '{}',
    cited_sources text[] NOT NULL DEFAULT '{}',
    prompt_tokens integer,
    completion_tokens integer,
    cost numeric,
    currency text,
    timings_ms jsonb NOT NULL DEFAULT '{}'::jsonb,
    total_ms double precision,
    error text
);

CREATE INDEX answer_log_asked_at ON rag.answer_log (asked_at);

CREATE TABLE rag.answer_feedback (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    answer_id bigint NOT NULL REFERENCES rag.answer_log (id) ON DELETE CASCADE,
    helpful boolean NOT NULL,
    comment text,
    given_by name NOT NULL,
    given_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX answer_feedback_answer ON rag.answer_feedback (answer_id);

GRANT SELECT ON rag.llms TO public;
