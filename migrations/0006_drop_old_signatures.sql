-- Functions of earlier versions whose signatures changed: a CREATE OR REPLACE with a new
-- signature adds an overload instead of replacing them, so they are dropped once here.
-- (These DROPs used to be re-run by the idempotent sql/ files at every install.)
DROP FUNCTION IF EXISTS rag._chunk_and_embed(text, text);
DROP FUNCTION IF EXISTS rag._create_pipeline(
    text, regclass, text, text, text[], jsonb, text, text
);
DROP FUNCTION IF EXISTS rag.create_pipeline(
    text, regclass, text, text, text[], jsonb, text, text
);
DROP FUNCTION IF EXISTS rag.create_pipeline(
    text, regclass, text[], text, text[], jsonb, text, text
);
DROP FUNCTION IF EXISTS rag.alter_pipeline(
    text, jsonb, text[], text, integer, double precision, double precision
);
DROP FUNCTION IF EXISTS rag.alter_pipeline(
    text, jsonb, text[], text, integer, double precision, double precision, regconfig, jsonb
);
DROP FUNCTION IF EXISTS rag._enqueue(text, text[], boolean);
DROP FUNCTION IF EXISTS rag._documents_index();
DROP FUNCTION IF EXISTS rag.search(text, integer);
DROP FUNCTION IF EXISTS rag.search(text, integer, text, text);
DROP FUNCTION IF EXISTS rag._search(text, text, integer, jsonb, text, text, jsonb);
DROP FUNCTION IF EXISTS rag._answer(text, integer);
DROP FUNCTION IF EXISTS rag.answer(text, integer);
DROP FUNCTION IF EXISTS rag._answer(text, integer, text);
DROP FUNCTION IF EXISTS rag.answer(text, integer, text);
