"""Load documents from disk as plain text ready for chunking.

Supports Markdown, plain text (including reStructuredText, kept as-is), HTML (reduced to
Markdown-ish text with the standard library's HTMLParser: `#` headings, `-` lists, ``` fences,
`a | b` table rows), PDF (the text layer, page by page, with pypdf) and DOCX (paragraphs, with
Word's heading and list styles as Markdown headings and list items, and tables, with
python-docx). Headings in the text are what the markdown chunker turns into each chunk's
section (its heading path); a PDF's page boundaries are kept in metadata["page_starts"].

Files are refused with a ``LoaderError`` naming the file and the reason when they are missing,
of an unsupported type, too large, binary, not valid UTF-8, encrypted, damaged, or a PDF with
no text layer. ``text_from_pdf`` and ``markdown_from_html`` do the same work on values, for SQL.

Modules: ``files`` (which files, the checks, the parser per format), one per format
(``text`` for Markdown, plain text and reST; ``html``; ``pdf``; ``docx``) and ``errors``.
The HTML conversion itself is pgask.text.html, which the html chunker uses too.

It reads files but writes nothing; pypdf and python-docx are imported only for those formats.
"""

from pgask.loaders.docx import text_from_docx
from pgask.loaders.errors import LoaderError
from pgask.loaders.files import (
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    LoadedDocument,
    file_sha256,
    iter_files,
    load_file,
)
from pgask.loaders.pdf import text_from_pdf, try_text_from_pdf
from pgask.text.html import html_to_text, markdown_from_html

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "LoadedDocument",
    "LoaderError",
    "html_to_text",
    "iter_files",
    "file_sha256",
    "load_file",
    "markdown_from_html",
    "text_from_docx",
    "text_from_pdf",
    "try_text_from_pdf",
]
