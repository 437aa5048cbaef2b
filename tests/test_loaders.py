"""Tests for pgask.loaders: formats, titles, HTML conversion and refusals."""

from __future__ import annotations

import codecs
from datetime import datetime, timedelta

import pytest

from pgask import loaders
from pgask.loaders import LoaderError, html_to_text, iter_files, load_file

PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html>
<html><head><meta charset="utf-8" /><title>CREATE
   INDEX</title>
<style>body { color: red }</style><script>var nav = "Prev";</script></head>
<body>
<div class="navheader"><table><tr><th>Prev</th><td><a href="up.html">Up</a></td></tr></table>
<div>nested header div</div></div>
<nav><a href="/">Home</a></nav>
<h1>Create   an index</h1>
<p>An index makes
   lookups fast &amp; cheap&nbsp;&lt;usually&gt;.<br/>Second line.</p>
<h2>Options</h2>
<ul><li>UNIQUE</li><li>CONCURRENTLY</li></ul>
<table><tr><th>Name</th><th>Type</th></tr><tr><td>id</td><td>integer</td></tr></table>
<pre>
CREATE INDEX idx ON t (col);

    -- indented &amp; kept
</pre>
<dl><dt>name</dt><dd>The index name.</dd></dl>
<div class="navfooter"><a href="next.html">Next</a></div>
</body></html>
"""


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
    monkeypatch.setattr(loaders, "MAX_FILE_BYTES", 10)
    path = write(tmp_path, "big.md", "x" * 11)
    with pytest.raises(LoaderError, match=r"11 bytes, larger than the limit of 10 bytes"):
        load_file(path)
    assert load_file(write(tmp_path, "ok.md", "x" * 10)).content == "x" * 10


def test_unsupported_suffix_lists_supported_ones(tmp_path):
    path = write(tmp_path, "report.pdf", b"%PDF-1.4")
    with pytest.raises(LoaderError, match=r"unsupported file type '\.pdf'.*\.html.*\.md"):
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
        "docs/sub/skip.pdf",
        "docs/.hidden.md",
        "docs/.git/config.md",
        "docs/z.rst",
        "other.pdf",
    ]:
        write(tmp_path, name, "x")
    docs, other, missing = tmp_path / "docs", tmp_path / "other.pdf", tmp_path / "gone.md"
    found = list(iter_files([str(docs), str(other), str(missing)]))
    assert found == [
        docs / "a.md",
        docs / "b.txt",
        docs / "sub" / "c.HTML",
        docs / "z.rst",
        other,  # named explicitly: yielded so that load_file can say why it is refused
        missing,
    ]
