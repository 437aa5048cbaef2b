-- The cost of a chunk's visibility check (docs/limits.md): 100,000 calls of a pipeline's
-- rag.pgask_<pipeline>_visible, which catches a key that no longer converts in a
-- subtransaction, against the plain SQL check it replaced. Run in a scratch database with
-- pgask installed: psql -d DB -f scripts/measure_visibility_check.sql (twice: the first run
-- also creates the table and pipeline).
CREATE TABLE IF NOT EXISTS public.visibility_probe (id int PRIMARY KEY, body text);
INSERT INTO public.visibility_probe
SELECT g, 'row ' || g FROM generate_series(1, 10000) AS g
ON CONFLICT DO NOTHING;
SELECT rag.create_pipeline('visibility_probe', 'public.visibility_probe', 'body')
WHERE NOT EXISTS (SELECT FROM rag.pipelines WHERE name = 'visibility_probe');
CREATE OR REPLACE FUNCTION public.plain_visible(document_id text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT FROM public.visibility_probe AS s WHERE s.id = $1::integer) $$;
\timing on
SELECT count(*) FROM generate_series(1, 100000) AS g WHERE public.plain_visible((g % 10000)::text);
SELECT count(*) FROM generate_series(1, 100000) AS g
WHERE rag.pgask_visibility_probe_visible((g % 10000)::text);
SELECT count(*) FROM generate_series(1, 100000) AS g WHERE public.plain_visible((g % 10000)::text);
SELECT count(*) FROM generate_series(1, 100000) AS g
WHERE rag.pgask_visibility_probe_visible((g % 10000)::text);
