-- Who may define pipelines, provider keys (secrets), and the checks every provider registry
-- (embedders, rerankers, LLMs) shares.

-- rag._require_admin(what): pipelines run SQL fragments with the privileges of the role that
-- processes the queue, so only members of the role owning the rag schema may define them.
CREATE OR REPLACE FUNCTION rag._require_admin(what text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_role oid := (SELECT nspowner FROM pg_namespace WHERE nspname = 'rag');
BEGIN
    IF NOT pg_has_role(current_user, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION '%: only members of role % (the owner of schema rag) may do this',
            what, owner_role::regrole
            USING errcode = 'insufficient_privilege';
    END IF;
END;
$$;

-- rag._secret(name): a provider API key from rag.secrets, for the embedding code only.
CREATE OR REPLACE FUNCTION rag._secret(secret_name text)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT value FROM rag.secrets WHERE name = secret_name
$$;
REVOKE ALL ON FUNCTION rag._secret(text) FROM public;

-- rag.set_secret(name, value): stores an API key that embedders can reference as
-- api_key_env => 'secret:NAME'. The key is never shown by pgask's views or errors.
CREATE OR REPLACE FUNCTION rag.set_secret(name text, value text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.set_secret');
    IF name IS NULL OR value IS NULL THEN
        RAISE EXCEPTION 'rag.set_secret: name and value must not be NULL'
            USING errcode = 'invalid_parameter_value';
    END IF;
    INSERT INTO rag.secrets AS s (name, value) VALUES (set_secret.name, set_secret.value)
    ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE SET value = excluded.value;
END;
$$;

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
