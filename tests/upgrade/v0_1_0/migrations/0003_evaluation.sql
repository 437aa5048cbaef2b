-- Evaluation results, kept so that runs with different settings can be compared in SQL or a
-- BI tool (see the view rag.eval_summary). Written by `pgask eval` and `pgask eval-answers`.

CREATE TABLE rag.eval_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('retrieval', 'answers')),
    dataset text NOT NULL,
    split text,
    pipeline text NOT NULL,
    embedder text NOT NULL,
    chunker jsonb NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    queries integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seconds double precision
);

CREATE TABLE rag.eval_results (
    run_id bigint NOT NULL REFERENCES rag.eval_runs (id) ON DELETE CASCADE,
    mode text NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (run_id, mode, metric)
);
