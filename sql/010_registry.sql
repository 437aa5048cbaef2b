-- Who may define pipelines, provider keys (secrets), and the checks every provider registry
-- (embedders, rerankers, LLMs) shares.

-- rag._caller(): the role the session acts as (SET ROLE, or the login role): inside a
-- SECURITY DEFINER function, where current_user is the function's owner, the role that
-- called it. (Neither can be set to a role the session is not a member of.)
CREATE OR REPLACE FUNCTION rag._caller()
RETURNS name
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
        ELSE current_setting('role')::name END
$$;

-- rag._require_admin(what): defining pipelines, registries and keys is for members of
-- pgask_admin (and superusers): the role the session acts as (rag._caller) and, outside
-- pgask's own SECURITY DEFINER functions, the current role. A pipeline's SQL also runs with
-- the rights of its source table's owner, which its author must have (rag._bind_source).
CREATE OR REPLACE FUNCTION rag._require_admin(what text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(rag._caller(), 'pgask_admin', 'USAGE')
            OR NOT (pg_has_role(current_user, 'pgask_admin', 'USAGE')
                OR current_user = (SELECT n.nspowner::regrole::name FROM pg_namespace AS n
                    WHERE n.nspname = 'rag')) THEN
        RAISE EXCEPTION '%: only members of role pgask_admin may do this', what
            USING errcode = 'insufficient_privilege',
            hint = 'A superuser runs GRANT pgask_admin TO <role>.';
    END IF;
END;
$$;

-- rag._require_member(what, source): the pipeline's SQL runs as its source table's owner:
-- only a role with that owner's rights may write it (the role the session acts as).
CREATE OR REPLACE FUNCTION rag._require_member(what text, source oid)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner_role oid := (SELECT c.relowner FROM pg_class AS c WHERE c.oid = source);
BEGIN
    IF owner_role IS NULL OR NOT pg_has_role(rag._caller(), owner_role, 'USAGE') THEN
        RAISE EXCEPTION '%: role % may not write SQL that runs as the owner of %: it must '
            'be a member of role % (a pipeline''s SQL never runs with rights its author '
            'lacks)', what, rag._caller(), source::regclass, owner_role::regrole
            USING errcode = 'insufficient_privilege';
    END IF;
END;
$$;

-- rag.set_secret(name, value, base_urls): stores an API key that embedders, rerankers and
-- LLMs can reference as api_key_env => 'secret:NAME'. The key is never shown by pgask's
-- views or errors; members of pgask_reader may use it, not read it; it is sent only to
-- base_urls (scheme://host[:port] of each, NULL: the providers' own public endpoints), so
-- whoever may register a provider cannot have it sent elsewhere. `pgask secret set NAME`
-- sends it as a bind parameter, so it is not in the statement's text (docs/security.md).
DROP FUNCTION IF EXISTS rag.set_secret(text, text);
CREATE OR REPLACE FUNCTION rag.set_secret(name text, value text, base_urls text[] DEFAULT NULL)
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
    IF EXISTS (SELECT FROM unnest(base_urls) AS u (url)
            WHERE u.url IS NULL OR u.url !~ '^https?://[^/?#@\s]+(/[^?#\s]*)?$') THEN
        RAISE EXCEPTION 'rag.set_secret: base_urls must be http(s) URLs such as '
            '''https://api.example.com/v1'', got %', base_urls
            USING errcode = 'invalid_parameter_value';
    END IF;
    PERFORM rag._put_secret(name, value, base_urls);
END;
$$;

-- rag._put_secret(name, value): stores a key in rag.secrets, which only pgask_owner may read.
-- SECURITY DEFINER: admins may set keys, never read them. Executable by pgask_admin.
DROP FUNCTION IF EXISTS rag._put_secret(text, text);
CREATE OR REPLACE FUNCTION rag._put_secret(name text, value text, base_urls text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM rag._require_admin('rag.set_secret');
    INSERT INTO rag.secrets AS s (name, value, base_urls)
    VALUES (_put_secret.name, _put_secret.value, _put_secret.base_urls)
    ON CONFLICT ON CONSTRAINT secrets_pkey DO UPDATE
    SET value = excluded.value, base_urls = excluded.base_urls;
END;
$$;
COMMENT ON FUNCTION rag._put_secret(text, text, text[]) IS
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
