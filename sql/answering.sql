-- rag._answer(...): the PL/Python implementation behind rag.answer; call rag.answer instead.
DROP FUNCTION IF EXISTS rag._answer(text, integer);
DROP FUNCTION IF EXISTS rag.answer(text, integer);
CREATE OR REPLACE FUNCTION rag._answer(question text, k integer, pipeline text)
RETURNS jsonb
LANGUAGE plpython3u
STABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask import sqlbridge
return sqlbridge.answer(plpy, question, k, pipeline)
$$;

-- rag.answer(question, k, pipeline): answers from the k best chunks of a pipeline and returns
-- {question, answer, mode: extractive|no_answer, citations: [{n, chunk_id, document_id,
-- title, source, chunk, span}], model, best_similarity, retrieved, version}.
-- With no LLM configured the answer is extractive: retrieved sentences only, each with [n].
-- Logic: pgask/answering/.
CREATE OR REPLACE FUNCTION rag.answer(
    question text, k integer DEFAULT 5, pipeline text DEFAULT 'documents'
)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF question IS NULL OR btrim(question) = '' THEN
        RAISE EXCEPTION 'rag.answer: question must be a non-empty text, got %',
            coalesce(quote_literal(question), 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'rag.answer: k must be between 1 and 1000, got %', coalesce(k::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    PERFORM rag._pipeline(pipeline, 'rag.answer');
    RETURN rag._answer(question, k, pipeline);
END;
$$;

-- rag.format_answer(result): an answer from rag.answer as text, with a numbered source list.
CREATE OR REPLACE FUNCTION rag.format_answer(result jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT result ->> 'answer' || coalesce(
        E'\n\nSources:\n' || string_agg(
            format('[%s] %s (%s)', c ->> 'n', c ->> 'title', c ->> 'source'), E'\n'
            ORDER BY (c ->> 'n')::int
        ),
        ''
    )
    FROM jsonb_array_elements(result -> 'citations') AS c
$$;

-- rag_answer(question): the one-liner. The answer text with its numbered sources, or
-- "I don't know" when the indexed documents hold nothing close enough to the question.
CREATE OR REPLACE FUNCTION public.rag_answer(question text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rag.format_answer(rag.answer(question, 5))
$$;
