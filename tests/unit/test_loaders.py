"""Tests for pgask.loaders: formats, titles, HTML conversion, PDF and DOCX, and refusals.

The PDF and DOCX files are made by tests/samples.py.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from datetime import datetime, timedelta

import pytest
from samples import GUIDE_PDF_TEXT, PAGE, encrypt_pdf, make_docx, make_pdf

from pgask import loaders
from pgask.loaders import (
    LoaderError,
    file_sha256,
    html_to_text,
    iter_files,
    load_file,
    markdown_from_html,
    text_from_docx,
    text_from_pdf,
    try_text_from_pdf,
)


def write(tmp_path, name: str, data: str | bytes):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def test_markdown_title_content_and_metadata(tmp_path):
    text = "Intro line\n\n# Real Title\n\nBody text.\n"
    path = write(tmp_path, "guide.md", text)
    doc = load_file(str(path))
    assert doc.source == str(path)
    assert doc.title == "Real Title"
    assert doc.content == text
    meta = doc.metadata
    assert meta["format"] == "markdown"
    assert meta["path"] == str(path.resolve())
    assert meta["bytes"] == len(text.encode())
    modified = datetime.fromisoformat(meta["modified"])
    assert modified.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("## Only a second-level heading ##\n\ntext", "Only a second-level heading"),
        ("```bash\n# a shell comment\n```\n\n## Section\n\n# Top", "Top"),
        ("```bash\n# a shell comment\n```\n\n### Section", "Section"),
        ("Setext Title\n============\n\nbody", "Setext Title"),
        ("no headings at all", "notes"),
    ],
)
def test_markdown_title_rules(tmp_path, text, title):
    assert load_file(write(tmp_path, "notes.markdown", text)).title == title


def test_text_file_uses_stem_and_normalises_line_endings(tmp_path):
    doc = load_file(write(tmp_path, "read me.txt", "line one\r\nline two\rline three\n"))
    assert doc.title == "read me"
    assert doc.content == "line one\nline two\nline three\n"
    assert doc.metadata["format"] == "text"


def test_rst_is_loaded_as_text(tmp_path):
    doc = load_file(write(tmp_path, "api.rst", "Title\n=====\n"))
    assert (doc.title, doc.metadata["format"]) == ("api", "text")


def test_utf8_bom_is_stripped(tmp_path):
    path = write(tmp_path, "bom.md", codecs.BOM_UTF8 + "# Café\n".encode())
    doc = load_file(path)
    assert doc.content == "# Café\n"
    assert doc.title == "Café"


def test_html_page_is_converted_without_chrome(tmp_path):
    doc = load_file(write(tmp_path, "sql-createindex.html", PAGE))
    assert doc.title == "CREATE INDEX"
    assert doc.metadata["format"] == "html"
    text = doc.content
    for chrome in ("Prev", "Up", "Next", "Home", "nested header div", "color: red", "var nav"):
        assert chrome not in text
    assert text.startswith("# Create an index\n\n")
    assert "An index makes lookups fast & cheap <usually>.\nSecond line." in text
    assert "\n\n## Options\n\n" in text
    assert "- UNIQUE\n- CONCURRENTLY" in text
    assert "Name | Type\nid | integer" in text
    assert "```\nCREATE INDEX idx ON t (col);\n\n    -- indented & kept\n```" in text
    assert "name\nThe index name." in text
    assert "\n\n\n" not in text
    assert text == text.strip()


def test_html_title_falls_back_to_h1_then_stem(tmp_path):
    assert html_to_text("<h2>Sub</h2><h1>Main <b>heading</b></h1><p>x</p>")[0] == "Main heading"
    assert html_to_text("<p>no title</p>") == ("", "no title")
    assert load_file(write(tmp_path, "page.htm", "<p>no title</p>")).title == "page"


def test_html_line_breaks_merge_but_double_br_makes_a_paragraph():
    html = "<div><p>a<br/>b<br><br>c</p></div><div>\n  <div>d</div></div>"
    assert html_to_text(html)[1] == "a\nb\n\nc\n\nd"


def test_html_skips_nested_navigation_and_unclosed_head():
    html = (
        "<head><title>T</title><body>"
        '<div class="navfooter"><div><div>deep</div></div>after-inner</div>'
        "<p>kept</p>"
    )
    assert html_to_text(html) == ("T", "kept")


def test_nul_bytes_are_refused_as_binary(tmp_path):
    path = write(tmp_path, "image.txt", b"abc\x00def")
    with pytest.raises(LoaderError, match="binary") as excinfo:
        load_file(path)
    assert str(path) in str(excinfo.value)


def test_invalid_utf8_reports_the_offset(tmp_path):
    path = write(tmp_path, "latin1.txt", "naïve".encode("latin-1"))
    with pytest.raises(LoaderError, match=r"not valid UTF-8 .*offset 2") as excinfo:
        load_file(path)
    assert str(path) in str(excinfo.value)


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    path = write(tmp_path, "bom.txt", codecs.BOM_UTF8 + b"ab\xff")
    with pytest.raises(LoaderError, match=r"UTF-8.*offset 5"):
        load_file(path)


def test_too_large_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders.files, "MAX_FILE_BYTES", 10)
    path = write(tmp_path, "big.md", "x" * 11)
    with pytest.raises(LoaderError, match=r"11 bytes, larger than the limit of 10 bytes"):
        load_file(path)
    assert load_file(write(tmp_path, "ok.md", "x" * 10)).content == "x" * 10


def test_unsupported_suffix_lists_supported_ones(tmp_path):
    path = write(tmp_path, "report.xlsx", b"PK")
    with pytest.raises(
        LoaderError, match=r"unsupported file type '\.xlsx'.*\.docx.*\.html.*\.md.*\.pdf"
    ):
        load_file(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    missing = tmp_path / "nope.md"
    with pytest.raises(LoaderError, match="no such file") as excinfo:
        load_file(missing)
    assert str(missing) in str(excinfo.value)
    with pytest.raises(LoaderError, match="not a regular file"):
        load_file(tmp_path)


def test_iter_files_walks_directories_sorted_and_filtered(tmp_path):
    for name in [
        "docs/b.txt",
        "docs/a.md",
        "docs/sub/c.HTML",
        "docs/sub/skip.xlsx",
        "docs/sub/d.pdf",
        "docs/sub/e.docx",
        "docs/.hidden.md",
        "docs/.git/config.md",
        "docs/z.rst",
        "other.xlsx",
    ]:
        write(tmp_path, name, "x")
    docs, other, missing = tmp_path / "docs", tmp_path / "other.xlsx", tmp_path / "gone.md"
    found = list(iter_files([str(docs), str(other), str(missing)]))
    assert found == [
        docs / "a.md",
        docs / "b.txt",
        docs / "sub" / "c.HTML",
        docs / "sub" / "d.pdf",
        docs / "sub" / "e.docx",
        docs / "z.rst",
        other,  # named explicitly: yielded so that load_file can say why it is refused
        missing,
    ]


# --- metadata -------------------------------------------------------------------


def test_metadata_records_title_hash_and_size(tmp_path):
    data = "# Guide\n\nBody.\n"
    path = write(tmp_path, "guide.md", data)
    meta = load_file(path).metadata
    assert meta["title"] == "Guide"
    assert meta["sha256"] == hashlib.sha256(data.encode()).hexdigest() == file_sha256(path)
    assert meta["bytes"] == len(data)


def test_file_sha256_refuses_what_load_file_refuses(tmp_path):
    with pytest.raises(LoaderError, match="no such file"):
        file_sha256(tmp_path / "gone.md")
    with pytest.raises(LoaderError, match="unsupported file type"):
        file_sha256(write(tmp_path, "x.xlsx", b"PK"))


# --- PDF ------------------------------------------------------------------------


def test_pdf_text_title_and_page_starts(tmp_path):
    path = write(tmp_path, "guide.pdf", make_pdf(
        [["Install guide", "First (page) line."], ["Second page text."]], title="The Guide"))
    doc = load_file(path)
    assert doc.title == "The Guide"
    assert doc.content == GUIDE_PDF_TEXT
    assert doc.metadata["format"] == "pdf"
    assert doc.metadata["pages"] == 2
    second = doc.metadata["page_starts"][1]
    assert doc.content[second:].startswith("Second page text.")


def test_pdf_without_a_title_is_named_after_the_file(tmp_path):
    assert load_file(write(tmp_path, "notes.pdf", make_pdf([["Some text."]]))).title == "notes"


def test_pdf_encrypted_with_a_password_is_refused(tmp_path):
    path = write(tmp_path, "secret.pdf", encrypt_pdf(make_pdf([["Hidden."]]), "s3cret"))
    with pytest.raises(LoaderError, match="encrypted PDF: a password is needed") as excinfo:
        load_file(path)
    assert str(path) in str(excinfo.value)


def test_pdf_encrypted_without_a_user_password_is_read():
    pdf = encrypt_pdf(make_pdf([["Readable despite encryption."]]), "")
    assert text_from_pdf(pdf) == "Readable despite encryption."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_pdf([["Some text."]])[:300], "damaged or unreadable PDF"),
        (b"%PDF-1.4\n" + bytes(range(256)) * 8, "damaged or unreadable PDF"),
        (b"plain text, not a PDF", r"not a PDF file \(no %PDF- header\)"),
        (make_pdf([[]]), "PDF has no extractable text"),
    ],
)
def test_unreadable_pdfs_are_refused_with_the_reason(tmp_path, data, reason):
    path = write(tmp_path, "bad.pdf", data)
    with pytest.raises(LoaderError, match=reason) as excinfo:
        load_file(path)
    assert str(excinfo.value).startswith(f"{path}: ")


def test_text_from_pdf_works_on_bytes():
    pdf = make_pdf([["Install guide", "First (page) line."], ["Second page text."]])
    assert text_from_pdf(pdf) == GUIDE_PDF_TEXT
    assert text_from_pdf(make_pdf([[]])) == ""  # no text layer is not an error here
    assert try_text_from_pdf(pdf) == (GUIDE_PDF_TEXT, None)
    assert try_text_from_pdf(b"nope") == (None, "not a PDF file (no %PDF- header)")
    with pytest.raises(ValueError, match="data must be bytes, got str"):
        text_from_pdf("text")  # type: ignore[arg-type]


# --- DOCX -----------------------------------------------------------------------

DOCX_TEXT = """# Install

## Debian

Run apt-get install postgresql.

- first bullet
  - nested bullet
1. numbered step

Name | Type
id | integer

### pgvector

Build it from source.
Then CREATE EXTENSION vector."""


def test_docx_headings_lists_and_tables_become_markdown(tmp_path):
    doc = load_file(write(tmp_path, "install.docx", make_docx()))
    assert doc.content == DOCX_TEXT
    assert doc.title == "Install"  # the Title paragraph, as no title property is set
    assert doc.metadata["format"] == "docx"
    assert text_from_docx(make_docx()) == DOCX_TEXT


def test_docx_title_property_wins(tmp_path):
    assert load_file(write(tmp_path, "a.docx", make_docx(title="Setup Notes"))).title == \
        "Setup Notes"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_docx()[:400], r"damaged or unreadable DOCX \(BadZipFile"),
        (b"PK\x03\x04 not really a zip", "damaged or unreadable DOCX"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "encrypted or legacy"),
        (b"just text", r"not a DOCX file \(not a ZIP archive\)"),
    ],
)
def test_unreadable_docx_files_are_refused_with_the_reason(tmp_path, data, reason):
    path = write(tmp_path, "bad.docx", data)
    with pytest.raises(LoaderError, match=reason) as excinfo:
        load_file(path)
    assert str(excinfo.value).startswith(f"{path}: ")


def test_a_zip_that_is_not_a_word_document_is_refused(tmp_path):
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(LoaderError, match="damaged or unreadable DOCX"):
        load_file(write(tmp_path, "fake.docx", out.getvalue()))


def test_markdown_from_html_is_html_to_text_without_the_title():
    assert markdown_from_html(PAGE) == html_to_text(PAGE)[1]
    with pytest.raises(ValueError, match="html must be a str, got bytes"):
        markdown_from_html(b"<p>x</p>")  # type: ignore[arg-type]
