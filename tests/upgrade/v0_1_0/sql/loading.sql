-- rag.markdown_from_html(html): an HTML page as Markdown-ish text: # headings, - list items,
-- ``` code fences, table rows as `a | b`, without page chrome (head, scripts, styles, nav).
-- It is what `pgask ingest` stores for HTML files and what rag.chunk(..., 'html') chunks.
-- NULL in, NULL out; any text is accepted (the parser is lenient), so no wrapper validates.
-- Logic: pgask/loaders.py.
CREATE OR REPLACE FUNCTION rag.markdown_from_html(html text)
RETURNS text
LANGUAGE plpython3u
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask.loaders import markdown_from_html
return markdown_from_html(html)
$$;

-- rag._text_from_pdf(data): the PL/Python implementation behind rag.text_from_pdf: the text,
-- or NULL and the reason the PDF cannot be read; call rag.text_from_pdf instead.
CREATE OR REPLACE FUNCTION rag._text_from_pdf(
    data bytea, OUT content text, OUT reason text
)
LANGUAGE plpython3u
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
if "pgask_version" not in GD:
    plpy.execute("SELECT rag._python_init()")
from pgask.loaders import try_text_from_pdf
return try_text_from_pdf(data)
$$;

-- rag.text_from_pdf(data): the text layer of a PDF, pages separated by a blank line; '' when
-- it has none (scanned pages would need OCR). Data that is not a PDF, a damaged PDF or one
-- encrypted with a password raises SQLSTATE 22023 with the reason. NULL in, NULL out.
-- Logic: pgask/loaders.py.
CREATE OR REPLACE FUNCTION rag.text_from_pdf(data bytea)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result record;
BEGIN
    -- The reason comes back as a value: raised in PL/Python, it would carry a traceback.
    SELECT * INTO result FROM rag._text_from_pdf(data);
    IF result.reason IS NOT NULL THEN
        RAISE EXCEPTION 'rag.text_from_pdf: %', result.reason
            USING errcode = 'invalid_parameter_value';
    END IF;
    RETURN result.content;
END;
$$;
