-- Reliability: pipelines follow DDL on their source tables, and bounds on the work of one call.

-- broken: why the pipeline cannot run (its source table or a column it uses was dropped, or
-- its content is no longer text); NULL when healthy. While broken, its triggers are removed
-- (writes to the source always succeed) and its queue waits; rag.alter_pipeline repairs what
-- it can, rag.drop_pipeline always works.
-- source_columns: {"attnum": "name"} of every source column the SQL fragments use, so a
-- rename is followed and a drop is noticed (rag._follow_source).
-- source_name: the source table's qualified name when last seen, for messages once it is gone.
ALTER TABLE rag.pipelines
ADD COLUMN broken text,
ADD COLUMN source_columns jsonb NOT NULL DEFAULT '{}'::jsonb,
ADD COLUMN source_name text;

-- Bounds (docs/reliability.md); pgask/limits.py holds the same defaults for a missing row.
INSERT INTO rag.settings (key, value) VALUES
('max_document_chars', '1000000'),
('max_chunks_per_document', '5000'),
('max_filter_nodes', '1000'),
('max_filter_depth', '32'),
('embed_batch_texts', '64')
ON CONFLICT (key) DO NOTHING;
