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

It reads files but writes nothing; pypdf and python-docx are imported only for those formats.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from pgask.chunking import markdown_headings

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

SUPPORTED_SUFFIXES: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class LoadedDocument:
    """One file's text, ready to store and chunk."""

    source: str  # the path as given, used as the upsert key
    title: str
    content: str  # plain text / markdown-ish text to chunk
    # format, path (absolute), title, modified (ISO-8601 UTC), bytes, sha256 (of the file);
    # PDFs add pages and page_starts (the offset in content where each page's text begins).
    metadata: dict


class LoaderError(Exception):
    """A file that cannot be loaded; str(e) is the reason, naming the file."""


def load_file(path: str | os.PathLike) -> LoadedDocument:
    """Read one supported file and return its title and text content."""
    source = os.fspath(path)
    file = Path(source)
    fmt = _check_loadable(file, source)
    data = _read(file, source)
    try:
        title, content, extra = _PARSERS[fmt](data)
    except LoaderError as exc:
        raise LoaderError(f"{source}: {exc}") from exc
    title = title or file.stem
    stat = file.stat()
    metadata = {
        "format": fmt,
        "path": str(file.resolve()),
        "title": title,
        "modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **extra,
    }
    return LoadedDocument(source, title, content, metadata)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a loadable file's bytes, to tell a changed file without parsing it.

    Raises LoaderError for the same missing, unsupported or oversized files as load_file.
    """
    source = os.fspath(path)
    file = Path(source)
    _check_loadable(file, source)
    return hashlib.sha256(_read(file, source)).hexdigest()


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Yield the files to load for ``paths``, expanding directories recursively.

    Directory contents are walked in sorted order, skipping hidden entries and files
    of unsupported types. Paths given explicitly are yielded even when unsupported or
    missing, so that ``load_file`` reports why they cannot be loaded.
    """
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def _walk(directory: Path) -> Iterator[Path]:
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        # Symlinked directories are not followed: they can form cycles.
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file() and entry.suffix.lower() in SUPPORTED_SUFFIXES:
            yield entry


# --- reading --------------------------------------------------------------------


def _check_loadable(file: Path, source: str) -> str:
    """Return the file's format, or raise LoaderError if it must not be read."""
    if not file.exists():
        raise LoaderError(f"{source}: no such file")
    if not file.is_file():
        raise LoaderError(f"{source}: not a regular file")
    fmt = SUPPORTED_SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise LoaderError(
            f"{source}: unsupported file type {file.suffix or '(no suffix)'!r};"
            f" supported: {supported}"
        )
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LoaderError(
            f"{source}: file is {size} bytes, larger than the limit of {MAX_FILE_BYTES} bytes"
        )
    return fmt


def _read(file: Path, source: str) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise LoaderError(f"{source}: cannot read file: {exc.strerror or exc}") from exc


# --- text formats ---------------------------------------------------------------
# Parsers take the file's bytes and return (title, content, extra metadata); their
# LoaderErrors give the reason only, and load_file puts the file name in front.


def _parse_text(data: bytes) -> tuple[str, str, dict]:
    return "", _decode(data), {}


def _parse_markdown(data: bytes) -> tuple[str, str, dict]:
    text = _decode(data)
    return _markdown_title(text), text, {}


def _parse_html(data: bytes) -> tuple[str, str, dict]:
    title, text = html_to_text(_decode(data))
    return title, text, {}


def _decode(data: bytes) -> str:
    if b"\x00" in data:
        raise LoaderError("binary file (contains NUL bytes)")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom  # report the offset in the file as stored, BOM included
        raise LoaderError(
            f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})"
        ) from exc
    return _normalize_newlines(text)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _markdown_title(text: str) -> str:
    """The first level-1 heading, else the first heading of any level, else ""."""
    titles = [(level, title) for level, title in markdown_headings(text) if title]
    top = [title for level, title in titles if level == 1]
    return (top or [title for _, title in titles] or [""])[0]


# --- PDF ------------------------------------------------------------------------

PAGE_SEPARATOR = "\n\n"


def text_from_pdf(data: bytes) -> str:
    """The text layer of a PDF, pages separated by a blank line; "" when it has none.

    Raises LoaderError for data that is not a PDF, is damaged, or is encrypted with a
    password (a PDF encrypted with an empty user password is read).
    """
    _title, pages = _read_pdf(data)
    return PAGE_SEPARATOR.join(pages)


def try_text_from_pdf(data: bytes) -> tuple[str | None, str | None]:
    """(text, None), or (None, the reason) when text_from_pdf refuses: for rag.text_from_pdf,
    whose plpgsql wrapper raises the SQL error, so no Python traceback reaches the user."""
    try:
        return text_from_pdf(data), None
    except LoaderError as exc:
        return None, str(exc)


def _parse_pdf(data: bytes) -> tuple[str, str, dict]:
    title, pages = _read_pdf(data)
    starts, offset = [], 0
    for page in pages:
        starts.append(offset)
        offset += len(page) + len(PAGE_SEPARATOR)
    content = PAGE_SEPARATOR.join(pages)
    if not content.strip():
        raise LoaderError("PDF has no extractable text (scanned pages would need OCR, "
                          "which pgask does not do; or the file is damaged)")
    return title, content, {"pages": len(pages), "page_starts": starts}


def _read_pdf(data: bytes) -> tuple[str, list[str]]:
    """(title from the PDF's metadata or "", text of each page)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if b"%PDF-" not in data[:1024]:
        raise LoaderError("not a PDF file (no %PDF- header)")
    import pypdf  # here, not inside the try below: an ImportError is no damaged PDF

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        _unlock(reader, pypdf)
        pages = [_clean(page.extract_text() or "") for page in reader.pages]
        if not pages:
            raise LoaderError("damaged or unreadable PDF (no pages found)")
        info = reader.metadata
        title = _clean(str(info.title or "")) if info is not None else ""
    except LoaderError:
        raise
    except Exception as exc:
        # pypdf raises whatever a damaged file provokes (PdfReadError, KeyError, ValueError,
        # RecursionError...): all of them mean "cannot read this PDF".
        raise LoaderError(f"damaged or unreadable PDF ({type(exc).__name__}: {exc})") from exc
    return " ".join(title.split()), pages


def _unlock(reader, pypdf) -> None:
    """Open an encrypted PDF with the empty user password, or refuse it."""
    if not reader.is_encrypted:
        return
    try:
        unlocked = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
    except pypdf.errors.DependencyError as exc:
        raise LoaderError(f"encrypted PDF that pgask cannot decrypt ({exc})") from exc
    if not unlocked:
        raise LoaderError("encrypted PDF: a password is needed to read it")


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and extracted text has stray ones.
    return _normalize_newlines(text.replace("\x00", "")).strip()


# --- DOCX -----------------------------------------------------------------------

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"


def text_from_docx(data: bytes) -> str:
    """A Word document as Markdown-ish text: headings, list items, paragraphs, table rows."""
    return _read_docx(data)[1]


def _parse_docx(data: bytes) -> tuple[str, str, dict]:
    title, text = _read_docx(data)
    return title or _markdown_title(text), text, {}


def _read_docx(data: bytes) -> tuple[str, str]:
    """(title from the document's properties or "", text)."""
    if data.startswith(_OLE_MAGIC):
        raise LoaderError("encrypted or legacy (.doc) Word file, not a plain DOCX: "
                          "save it as an unencrypted .docx")
    if not data.startswith(_ZIP_MAGIC):
        raise LoaderError("not a DOCX file (not a ZIP archive)")
    import docx  # here, not inside the try below: an ImportError is no damaged file

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [_docx_block(item) for item in document.iter_inner_content()]
        title = document.core_properties.title or ""
    except Exception as exc:
        # python-docx and zipfile raise many types on damaged files (BadZipFile, KeyError,
        # PackageNotFoundError, XMLSyntaxError...): all of them mean "cannot read it".
        raise LoaderError(f"damaged or unreadable DOCX ({type(exc).__name__}: {exc})") from exc
    return " ".join(title.split()), _join_docx_blocks([b for b in blocks if b[1]])


def _docx_block(item) -> tuple[str, str]:
    """(kind, text) of a paragraph or table: kind is "item" for list items, else "block"."""
    from docx.table import Table

    if isinstance(item, Table):
        return "block", _docx_table(item)
    text = _clean(item.text)
    style = item.style.name if item.style is not None else ""
    if style == "Title" or style.startswith("Heading "):
        # The Title is the one level-1 heading; Heading 1 sections sit below it.
        level = int(style[8:]) + 1 if style[8:].isdigit() else 1
        return "block", f"{'#' * min(level, 6)} {' '.join(text.split())}" if text else ""
    list_level = _docx_list_level(item, style)
    if list_level is not None and text:
        marker = "1." if "Number" in style else "-"
        return "item", f"{'  ' * list_level}{marker} {text}"
    return "block", text


def _docx_list_level(paragraph, style: str) -> int | None:
    """The nesting level of a list paragraph (0 = top), None when it is not in a list."""
    properties = paragraph._p.pPr
    numbering = properties.numPr if properties is not None else None
    if numbering is not None and numbering.ilvl is not None:
        return int(numbering.ilvl.val)
    if style.startswith(("List Bullet", "List Number")):
        suffix = style.split()[-1]
        return int(suffix) - 1 if suffix.isdigit() else 0
    return 0 if numbering is not None else None


def _docx_table(table) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(_clean(cell.text).split()))
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def _join_docx_blocks(blocks: list[tuple[str, str]]) -> str:
    """Blocks separated by blank lines, except consecutive list items: one list, one block."""
    parts: list[str] = []
    previous = ""
    for kind, text in blocks:
        if parts:
            parts.append("\n" if kind == previous == "item" else "\n\n")
        parts.append(text)
        previous = kind
    return "".join(parts)


_PARSERS = {
    "markdown": _parse_markdown,
    "text": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
}


# --- HTML -----------------------------------------------------------------------


def markdown_from_html(html: str) -> str:
    """An HTML page as Markdown-ish text: html_to_text without the title."""
    if not isinstance(html, str):
        raise ValueError(f"html must be a str, got {type(html).__name__}")
    return html_to_text(html)[1]


def html_to_text(html: str) -> tuple[str, str]:
    """Convert an HTML page to (title, Markdown-ish text).

    The title is the <title> text, else the first <h1>, else "". Page chrome
    (<head>, scripts, styles, <nav>, PostgreSQL-manual navheader/navfooter) is dropped.
    """
    parser = _HtmlTextExtractor()
    parser.feed(html.replace("\x00", ""))  # NUL marks preformatted blocks below
    parser.close()
    return parser.title(), parser.text()


_SKIPPED_TAGS = frozenset({"head", "script", "style", "nav", "noscript", "template"})
_SKIPPED_CLASSES = ("navheader", "navfooter")
_PARAGRAPH_TAGS = frozenset(
    "p blockquote table ul ol dl figure hr section article aside header footer main form"
    " fieldset details address".split()
)
_LINE_TAGS = frozenset({"div", "tr", "dt", "dd", "caption", "figcaption", "summary"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_WHITESPACE = re.compile(r"\s+")
_PRE_MARK = re.compile(r"\x00(\d+)\x00")


class _HtmlTextExtractor(HTMLParser):
    """Collect visible text, marking block boundaries with newlines.

    Inline whitespace is collapsed when the text is assembled, so preformatted
    blocks are stored aside and stand in the stream as NUL-delimited markers.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._newlines = 0  # line breaks owed before the next text; breaks merge, not add
        self._pre_blocks: list[str] = []
        self._pre: list[str] | None = None
        self._pre_depth = 0
        self._skip_tag: str | None = None  # element whose subtree is being dropped
        self._skip_depth = 0  # nesting of that tag inside itself
        self._title: list[str] | None = None
        self._title_text = ""
        self._h1: list[str] | None = None
        self._h1_text = ""
        self._cells_in_row = 0

    # -- results --

    def title(self) -> str:
        return self._title_text or self._h1_text

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self._out).split("\n"))
        kept: list[str] = []
        for line in lines:
            if line or (kept and kept[-1]):
                kept.append(line)
        text = "\n".join(kept).strip()
        return _PRE_MARK.sub(lambda m: self._pre_blocks[int(m.group(1))], text)

    # -- parser callbacks --

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and self._title is None and not self._title_text:
            self._title = []  # read even inside the skipped <head>
            return
        if self._skip_tag is not None:
            self._track_skipped_start(tag)
            return
        classes = dict(attrs).get("class") or ""
        if tag in _SKIPPED_TAGS or any(name in classes for name in _SKIPPED_CLASSES):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if self._pre is not None:
            if tag == "pre":
                self._pre_depth += 1
            return
        self._open_block(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self._title_text = " ".join("".join(self._title).split())
            self._title = None
            return
        if self._skip_tag is not None:
            self._track_skipped_end(tag)
            return
        if self._pre is not None:
            if tag == "pre":
                self._pre_depth -= 1
                if self._pre_depth == 0:
                    self._close_pre()
            return
        self._close_block(tag)

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        elif self._skip_tag is not None:
            return
        elif self._pre is not None:
            self._pre.append(data)
        else:
            # Source newlines inside running text are not line breaks; only tags make those.
            self._emit(_WHITESPACE.sub(" ", data))
            if self._h1 is not None:
                self._h1.append(data)

    # -- helpers --

    def _track_skipped_start(self, tag: str) -> None:
        if self._skip_tag == "head" and tag == "body":
            self._skip_tag = None  # an unclosed <head> ends where <body> starts
        elif tag == self._skip_tag:
            self._skip_depth += 1

    def _track_skipped_end(self, tag: str) -> None:
        if tag == self._skip_tag:
            self._skip_depth -= 1
            if self._skip_depth == 0:
                self._skip_tag = None

    def _emit(self, text: str) -> None:
        if self._newlines:
            if text.isspace():
                return  # indentation between block tags in the source
            self._out.append("\n" * self._newlines)
            self._newlines = 0
        self._out.append(text)

    def _line_break(self, newlines: int) -> None:
        self._newlines = max(self._newlines, newlines)

    def _open_block(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._line_break(2)
            self._emit("#" * _HEADINGS[tag] + " ")
            if tag == "h1" and not self._h1_text:
                self._h1 = []
        elif tag == "pre":
            self._pre, self._pre_depth = [], 1
        elif tag == "br":
            # Unlike block tags, consecutive <br>s add up: <br><br> is a paragraph break.
            self._newlines = min(self._newlines + 1, 2)
        elif tag == "li":
            self._line_break(1)
            self._emit("- ")
        elif tag == "tr":
            self._line_break(1)
            self._cells_in_row = 0
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self._emit(" | ")
            self._cells_in_row += 1
        elif tag in _PARAGRAPH_TAGS:
            self._line_break(2)
        elif tag in _LINE_TAGS:
            self._line_break(1)

    def _close_block(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._line_break(2)
            if self._h1 is not None:
                self._h1_text = " ".join("".join(self._h1).split())
                self._h1 = None
        elif tag in _PARAGRAPH_TAGS:
            self._line_break(2)
        elif tag in _LINE_TAGS or tag == "li":
            self._line_break(1)

    def _close_pre(self) -> None:
        body = "".join(self._pre or [])
        # Browsers drop a newline right after <pre>; trailing blank lines carry nothing.
        body = body.removeprefix("\n").rstrip()
        self._pre = None
        if body.strip():
            self._pre_blocks.append(f"```\n{body}\n```")
            self._line_break(2)
            self._emit(f"\x00{len(self._pre_blocks) - 1}\x00")
            self._line_break(2)
