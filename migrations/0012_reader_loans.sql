-- 0012: a loan of schema rag_source names the one function it is for (rag._open_source_schema
-- draws the name): no other function may be created or changed there (rag._on_reader_change).
ALTER TABLE rag.source_schema_loans ADD COLUMN function_name text;
