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

CREATE OR REPLACE TRIGGER documents_touch
BEFORE UPDATE ON rag.documents
FOR EACH ROW EXECUTE FUNCTION rag._documents_touch();

-- rag._documents_index(): re-chunks and re-embeds a document whose content or title changed,
-- in the writer's transaction (synchronous: the local model needs no network). Deleted
-- documents lose their chunks through the foreign key's ON DELETE CASCADE.
CREATE OR REPLACE FUNCTION rag._documents_index()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF tg_op = 'UPDATE'
        AND new.content IS NOT DISTINCT FROM old.content
        AND new.title IS NOT DISTINCT FROM old.title THEN
        RETURN NULL;
    END IF;
    DELETE FROM rag.chunks WHERE rag.chunks.document_id = new.id;
    INSERT INTO rag.chunks (
        document_id, ordinal, content, token_count, content_hash, char_start, char_end, embedding
    )
    SELECT
        new.id,
        c.ordinal,
        c.content,
        c.token_count,
        sha256(convert_to(c.content, 'UTF8')),
        c.char_start,
        c.char_end,
        c.embedding
    FROM rag._chunk_and_embed(new.content, new.title) AS c;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER documents_index
AFTER INSERT OR UPDATE OF content, title ON rag.documents
FOR EACH ROW EXECUTE FUNCTION rag._documents_index();
