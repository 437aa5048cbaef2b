"""The SQL side of loading and chunking: rag.markdown_from_html, rag.text_from_pdf and the
rag.chunk overloads, with their errors free of Python tracebacks."""

from __future__ import annotations

import json

import psycopg
import pytest
from samples import GUIDE_PDF_TEXT, PAGE, encrypt_pdf, make_pdf

from pgask.chunking import CHUNK_METHODS, chunk_text
from pgask.embedders.local import count_tokens
from pgask.loaders import markdown_from_html
from pgask.tokenization import TOKENIZERS, get_counter

MARKDOWN = """# Install

Intro to install.

## Debian

Build pgvector from source, then run CREATE EXTENSION vector in each database.
"""


def sql_error(db, query: str, *params) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as excinfo:
        db.execute(query, params or None).fetchall()
    error = excinfo.value
    assert error.sqlstate == "22023", error
    # Users must never read a Python traceback: PL/Python would put one in the context.
    assert "Traceback" not in (error.diag.context or "")
    assert "PL/Python" not in (error.diag.context or "")
    return error


def test_markdown_from_html(db):
    (text,) = db.execute("SELECT rag.markdown_from_html(%s)", (PAGE,)).fetchone()
    assert text == markdown_from_html(PAGE)
    assert text.startswith("# Create an index\n\n")
    assert db.execute("SELECT rag.markdown_from_html(NULL)").fetchone() == (None,)


def test_text_from_pdf(db):
    pdf = make_pdf([["Install guide", "First (page) line."], ["Second page text."]])
    assert db.execute("SELECT rag.text_from_pdf(%s)", (pdf,)).fetchone() == (GUIDE_PDF_TEXT,)
    assert db.execute("SELECT rag.text_from_pdf(%s)", (make_pdf([[]]),)).fetchone() == ("",)
    assert db.execute("SELECT rag.text_from_pdf(NULL)").fetchone() == (None,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encrypt_pdf(make_pdf([["Hidden."]]), "s3cret"),
         "rag.text_from_pdf: encrypted PDF: a password is needed to read it"),
        (make_pdf([["Some text."]])[:300], "rag.text_from_pdf: damaged or unreadable PDF ("),
        (b"GIF89a", "rag.text_from_pdf: not a PDF file (no %PDF- header)"),
    ],
)
def test_text_from_pdf_refuses_unreadable_pdfs_in_one_clear_line(db, data, message):
    error = sql_error(db, "SELECT rag.text_from_pdf(%s)", data)
    assert error.diag.message_primary.startswith(message)


def test_old_chunk_signature_is_unchanged(db):
    text = "One two three. Four five six.\n\nSeven eight nine ten eleven. " * 20
    cursor = db.execute("SELECT * FROM rag.chunk(%s, 20)", (text,))
    assert [c.name for c in cursor.description] == [
        "ordinal", "content", "token_count", "char_start", "char_end"]
    expected = chunk_text(text, max_tokens=20, count_tokens=count_tokens)
    assert cursor.fetchall() == [(c.ordinal, c.content, c.token_count, c.start, c.end)
                                 for c in expected]
    assert len(db.execute("SELECT * FROM rag.chunk('x')").fetchall()) == 1
    assert db.execute("SELECT count(*) FROM rag.chunk(NULL, 5)").fetchone() == (0,)


def test_chunk_by_method_returns_metadata_and_embed_text(db):
    rows = db.execute(
        "SELECT ordinal, content, token_count, char_start, char_end, metadata, embed_text"
        " FROM rag.chunk(%s, 'markdown', 26)", (MARKDOWN,)).fetchall()
    # 26 tokens: each section fits with its heading path, the two together do not.
    assert [(r[5], r[6].split("\n")[0]) for r in rows] == [
        ({"heading_path": "Install"}, "Install"),
        ({"heading_path": "Install > Debian"}, "Install > Debian"),
    ]
    for _, content, tokens, start, end, _, embed_text in rows:
        assert MARKDOWN[start:end] == content and embed_text.endswith(content)
        assert tokens == count_tokens(embed_text) <= 26


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_chunk_counts_with_the_named_tokenizer(db, tokenizer):
    rows = db.execute("SELECT content, token_count FROM rag.chunk(%s, 'tokens', 12, 0, %s)",
                      (MARKDOWN, tokenizer)).fetchall()
    count = get_counter(tokenizer)
    assert len(rows) > 1
    assert all(tokens == count(content) <= 12 for content, tokens in rows)


def test_chunk_html_offsets_index_the_converted_text(db):
    rows = db.execute(
        "SELECT c.content, substr(rag.markdown_from_html(%(html)s), c.char_start + 1,"
        " c.char_end - c.char_start) FROM rag.chunk(%(html)s, 'html', 40) AS c",
        {"html": PAGE}).fetchall()
    assert rows and all(content == span for content, span in rows)


def test_chunk_named_arguments_choose_the_overload(db):
    rows = db.execute("SELECT * FROM rag.chunk(document => 'a b c d', method => 'tokens',"
                      " max_tokens => 2, tokenizer => 'cl100k_base')").fetchall()
    assert [r[1] for r in rows] == ["a b", "c d"]
    assert len(db.execute("SELECT * FROM rag.chunk('a b', max_tokens => 5)").fetchone()) == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM rag.chunk('q', 'foo')",
         "rag.chunk: method must be one of html, markdown, recursive, tokens, got 'foo'"),
        ("SELECT * FROM rag.chunk('q', NULL::text)",
         "rag.chunk: method must be one of html, markdown, recursive, tokens, got NULL"),
        ("SELECT * FROM rag.chunk('q', 'tokens', 0)",
         "rag.chunk: max_tokens must be between 1 and 8192, got 0"),
        ("SELECT * FROM rag.chunk('q', 'tokens', 10, 10)",
         "rag.chunk: overlap must be >= 0 and < max_tokens (10), got 10"),
        ("SELECT * FROM rag.chunk('q', 'tokens', 10, 0, 'gpt2')",
         "rag.chunk: tokenizer must be one of minilm, cl100k_base, o200k_base, got 'gpt2'"),
        ("SELECT * FROM rag.chunk('q', 0)",
         "rag.chunk: max_tokens must be between 1 and 8192, got 0"),
    ],
)
def test_chunk_errors_are_one_clear_line(db, query, message):
    assert sql_error(db, query).diag.message_primary == message


def test_sql_lists_match_the_python_ones(db):
    methods = sql_error(db, "SELECT * FROM rag.chunk('q', 'x')").diag.message_primary
    tokenizers = sql_error(db, "SELECT * FROM rag.chunk('q', 'tokens', 5, 0, 'x')")
    assert f"one of {', '.join(CHUNK_METHODS)}, got" in methods
    assert f"one of {', '.join(TOKENIZERS)}, got" in tokenizers.diag.message_primary


def test_metadata_is_a_json_object(db):
    (metadata,) = db.execute(
        "SELECT metadata FROM rag.chunk('plain text', 'recursive')").fetchone()
    assert metadata == {} and json.dumps(metadata) == "{}"
