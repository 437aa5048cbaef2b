-- Embedders as data: the built-in offline model and rag.create_embedder. (rag.embed is in
-- 030_embedding.sql.)

-- The built-in offline model, always available as embedder 'local'.
INSERT INTO rag.embedders (name, provider, model, dimensions)
VALUES ('local', 'local', 'all-MiniLM-L6-v2-int8', 384)
ON CONFLICT (name) DO NOTHING;

-- rag.create_embedder(...): registers (or, while no pipeline uses it, redefines) an embedder.
-- provider 'local' is the offline model; 'openai' is any OpenAI-compatible /v1/embeddings
-- endpoint (OpenAI, Azure, Ollama, vLLM, TEI, `pgask serve-embeddings`). api_key_env names an
-- environment variable of the database server, or 'secret:NAME' for rag.set_secret.
-- options: timeout_seconds, max_batch_inputs, max_batch_tokens, send_dimensions.
CREATE OR REPLACE FUNCTION rag.create_embedder(
    name text,
    provider text DEFAULT 'openai',
    model text DEFAULT NULL,
    dimensions integer DEFAULT NULL,
    base_url text DEFAULT NULL,
    api_key_env text DEFAULT NULL,
    options jsonb DEFAULT '{}'::jsonb
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    used_by text;
BEGIN
    PERFORM rag._require_admin('rag.create_embedder');
    PERFORM rag._check_registration('rag.create_embedder', name, base_url,
        CASE WHEN provider = 'openai' THEN 'https://api.openai.com/v1' END, options);
    IF provider IS NULL OR provider NOT IN ('local', 'openai') THEN
        RAISE EXCEPTION 'rag.create_embedder: provider must be ''local'' or ''openai'', got %',
            coalesce(quote_literal(provider), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF provider = 'local' THEN
        model := coalesce(model, 'all-MiniLM-L6-v2-int8');
        dimensions := coalesce(dimensions, 384);
        IF model <> 'all-MiniLM-L6-v2-int8' OR dimensions <> 384 THEN
            RAISE EXCEPTION 'rag.create_embedder: the local provider has one model, '
                'all-MiniLM-L6-v2-int8 with 384 dimensions, got % with %', model, dimensions
                USING errcode = 'invalid_parameter_value';
        END IF;
    ELSE
        IF model IS NULL OR btrim(model) = '' THEN
            RAISE EXCEPTION 'rag.create_embedder: model is required for provider openai'
                USING errcode = 'invalid_parameter_value';
        END IF;
    END IF;
    IF dimensions IS NULL OR dimensions < 1 OR dimensions > 16000 THEN
        RAISE EXCEPTION 'rag.create_embedder: dimensions must be between 1 and 16000, got %',
            coalesce(dimensions::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(p.name, ', ') INTO used_by FROM rag.pipelines AS p
    WHERE p.embedder = create_embedder.name OR p.building_embedder = create_embedder.name;
    IF used_by IS NOT NULL THEN
        RAISE EXCEPTION 'rag.create_embedder: embedder % is pinned by pipeline(s) %; '
            'register a new name and switch with rag.reembed', name, used_by
            USING errcode = 'object_in_use';
    END IF;
    INSERT INTO rag.embedders AS e (
        name, provider, model, dimensions, base_url, api_key_env, options
    )
    VALUES (name, provider, model, dimensions, base_url, api_key_env, options)
    ON CONFLICT ON CONSTRAINT embedders_pkey DO UPDATE
        SET provider = excluded.provider, model = excluded.model,
        dimensions = excluded.dimensions, base_url = excluded.base_url,
        api_key_env = excluded.api_key_env, options = excluded.options;
END;
$$;
