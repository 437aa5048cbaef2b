-- Who may define pipelines, provider keys (secrets), and the checks every provider registry
-- (embedders, rerankers, LLMs) shares.

-- rag._require_admin(what): defining pipelines, registries and keys is for members of
-- pgask_admin (and superusers). A pipeline's SQL also runs with the rights of its source
-- table's owner, which its author must have (rag._bind_source).
CREATE OR REPLACE FUNCTION rag._require_admin(what text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(current_user, 'pgask_admin', 'USAGE') THEN
        RAISE EXCEPTION '%: only members of role pgask_admin may do this', what
            USING errcode = 'insufficient_privilege',
            hint = 'A superuser runs GRANT pgask_admin TO <role>.';
    END IF;
END;
$$;

-- rag.set_secret(name, value): stores an API key that embedders, rerankers and LLMs can
-- reference as api_key_env => 'secret:NAME'. The key is never shown by pgask's views or
-- errors; members of pgask_reader may use it, not read it. `pgask secret set NAME` sends it
-- as a bind parameter, so it is not in the statement's text (docs/security.md).
CREATE OR REPLACE FUNCTION rag.set_secret(name text, value text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.set_secret');
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'rag.set_secret: name must be 1-64 letters, digits or _.:-, got %',
            coalesce(quote_literal(name), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    -- The value is never part of a message.
    IF value IS NULL OR value = '' THEN
        RAISE EXCEPTION 'rag.set_secret: value must be a non-empty key'
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF name !~ '^[A-Za-z0-9_.:-]{1,64}$' OR length(value) > 10000 THEN
        RAISE EXCEPTION 'rag.set_secret: name must be 1-64 letters, digits or _.:- and value '
            'at most 10000 characters (got a name of % and a value of % characters)',
            length(name), length(value)
            USING errcode = 'invalid_parameter_value';
    END IF;
    PERFORM rag._put_secret(name, value);
END;
$$;

-- rag._put_secret(name, value): stores a key in rag.secrets, which only pgask_owner may read.
-- SECURITY DEFINER: admins may set keys, never read them. Executable by pgask_admin.
CREATE OR REPLACE FUNCTION rag._put_secret(name text, value text)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO rag.secrets AS s (name, value) VALUES (_put_secret.name, _put_secret.value)
    ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE SET value = excluded.value
$$;
COMMENT ON FUNCTION rag._put_secret(text, text) IS
'SECURITY DEFINER: rag.secrets belongs to pgask_owner; admins set keys, never read them';

-- rag._check_registration(caller, name, base_url, url_example, options): the checks every
-- provider registry (embedders, rerankers, LLMs) makes; base_url is checked unless
-- url_example is NULL (a provider without an endpoint).
CREATE OR REPLACE FUNCTION rag._check_registration(
    caller text, name text, base_url text, url_example text, options jsonb
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION '%: name must be 1-64 letters, digits or _.:-, got %', caller,
            coalesce(quote_literal(name), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF url_example IS NOT NULL AND (base_url IS NULL OR base_url !~ '^https?://') THEN
        RAISE EXCEPTION '%: base_url must be an http(s) URL such as %, got %', caller,
            url_example, coalesce(quote_literal(base_url), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION '%: options must be a JSON object', caller
            USING errcode = 'invalid_parameter_value';
    END IF;
END;
$$;
