-- One error shape: whatever fails inside pgask reaches the caller as a PostgreSQL error with a
-- proper SQLSTATE and a message naming the function, never a Python traceback.

-- rag._raise_clean(caller, sqlstate, message, hint): raises an error caught from PL/Python again,
-- without its traceback (PL/Python puts it in CONTEXT) and without the Python class name in
-- front of the message. A Python exception (XX000, 38000) stays 38000; an SQL error keeps
-- its own SQLSTATE (42501 privilege, 57014 cancel, 53400 limit, ...).
CREATE OR REPLACE FUNCTION rag._raise_clean(
    caller text, state text, message text, hint text DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Without the Python class name, and without the name of the pgask function that
    -- raised it inside (rag.embed within rag.search): the caller's name goes in front.
    clean text := regexp_replace(regexp_replace(message,
        '^(spiexceptions\.|plpy\.)?[A-Z][A-Za-z]+: ', ''), '^rag\.[a-z_]+: ', '');
BEGIN
    clean := caller || ': ' || clean;
    IF state IN ('XX000', '38000') OR state IS NULL THEN
        state := '38000';
    END IF;
    IF coalesce(hint, '') = '' THEN
        RAISE EXCEPTION '%', clean USING errcode = state;
    END IF;
    RAISE EXCEPTION '%', clean USING errcode = state, hint = hint;
END;
$$;

-- rag._check_document(document, caller): refuses a text longer than rag.settings
-- max_document_chars (default 1000000) with SQLSTATE 53400: chunking or embedding a 20 MB
-- text would hold the backend for minutes.
CREATE OR REPLACE FUNCTION rag._check_document(document text, caller text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bound bigint := coalesce((
        SELECT s.value::bigint FROM rag.settings AS s
        WHERE s.key = 'max_document_chars' AND s.value ~ '^[0-9]{1,15}$'
    ), 1000000);
BEGIN
    IF length(document) > bound THEN
        RAISE EXCEPTION '%: the document has % characters, more than max_document_chars (%)',
            caller, length(document), bound
            USING errcode = 'program_limit_exceeded',
            hint = 'The bound is a row of rag.settings: UPDATE rag.settings SET value = ... '
                'WHERE key = ''max_document_chars''.';
    END IF;
END;
$$;

-- rag._check_reader(pipeline, caller): a role that may not read a pipeline's chunks gets
-- SQLSTATE 42501 naming the pipeline, before any work. Chunks are readable by the roles
-- that may SELECT from the pipeline's source table (rag._sync_security).
CREATE OR REPLACE FUNCTION rag._check_reader(pipeline text, caller text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chunks regclass := to_regclass(format('rag.%I', pipeline || '_chunks'));
BEGIN
    IF chunks IS NOT NULL AND NOT has_table_privilege(chunks, 'SELECT') THEN
        RAISE EXCEPTION '%: role % may not read pipeline %', caller, current_user, pipeline
            USING errcode = 'insufficient_privilege',
            hint = format('Its chunks are readable by the roles that may SELECT from its '
                'source table %s.', (SELECT coalesce(p.source_name, p.source::text)
                    FROM rag.pipelines AS p WHERE p.name = pipeline));
    END IF;
END;
$$;
