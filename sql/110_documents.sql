-- rag._documents_touch(): keeps rag.documents.updated_at current on every update.
CREATE OR REPLACE FUNCTION rag._documents_touch()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Made once: re-creating it at every install would hold writes to rag.documents until the
-- install commits.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid = 'rag.documents'::pg_catalog.regclass
                AND t.tgname = 'documents_touch') THEN
        CREATE TRIGGER documents_touch
        BEFORE UPDATE ON rag.documents
        FOR EACH ROW EXECUTE FUNCTION rag._documents_touch();
    END IF;
END;
$$;

-- rag.documents is one pipeline like any other: "documents", in sync mode, so a document is
-- searchable as soon as its INSERT commits (the local model needs no network; if embedding
-- fails, the row stays queued and the write still succeeds). Change it with
-- rag.alter_pipeline('documents', mode => 'async') for remote embedders.
-- Chunks carry the document's metadata keys at the top level, next to its source. (Before
-- 0.1.0's retrieval work they were nested under "metadata": an install that finds that form
-- rebuilds the chunks' metadata in the background; vectors are kept.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM rag.pipelines WHERE name = 'documents') THEN
        PERFORM rag.create_pipeline(
            'documents', 'rag.documents', 'content',
            title => 'title', metadata => ARRAY['source', 'metadata'], mode => 'sync'
        );
    ELSIF (SELECT metadata_sql FROM rag.pipelines WHERE name = 'documents')
        <> rag._metadata_sql('rag.documents', ARRAY['source', 'metadata']) THEN
        PERFORM rag.alter_pipeline('documents', metadata => ARRAY['source', 'metadata']);
    END IF;
END;
$$;
