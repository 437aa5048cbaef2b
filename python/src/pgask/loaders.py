"""Load documents from disk as plain text ready for chunking.

Supports Markdown, plain text (including reStructuredText, kept as-is) and HTML,
which is reduced to Markdown-ish text with the standard library's HTMLParser.
Files are refused with a ``LoaderError`` naming the file and the reason when they
are missing, of an unsupported type, too large, binary or not valid UTF-8.

Pure module: standard library only; it reads files but writes nothing.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "LoadedDocument",
    "LoaderError",
    "html_to_text",
    "iter_files",
    "load_file",
]

SUPPORTED_SUFFIXES: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
}
MAX_FILE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class LoadedDocument:
    """One file's text, ready to store and chunk."""

    source: str  # the path as given, used as the upsert key
    title: str
    content: str  # plain text / markdown-ish text to chunk
    metadata: dict  # format, path (absolute), modified (ISO-8601 UTC), bytes


class LoaderError(Exception):
    """A file that cannot be loaded; str(e) is the reason, naming the file."""


def load_file(path: str | os.PathLike) -> LoadedDocument:
    """Read one supported file and return its title and text content."""
    source = os.fspath(path)
    file = Path(source)
    fmt = _check_loadable(file, source)
    text = _decode(_read(file, source), source)
    if fmt == "html":
        title, content = html_to_text(text)
    else:
        title, content = (_markdown_title(text) if fmt == "markdown" else ""), text
    stat = file.stat()
    metadata = {
        "format": fmt,
        "path": str(file.resolve()),
        "modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
        "bytes": stat.st_size,
    }
    return LoadedDocument(source, title or file.stem, content, metadata)


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
        data = file.read_bytes()
    except OSError as exc:
        raise LoaderError(f"{source}: cannot read file: {exc.strerror or exc}") from exc
    if b"\x00" in data:
        raise LoaderError(f"{source}: binary file (contains NUL bytes)")
    return data


def _decode(data: bytes, source: str) -> str:
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom  # report the offset in the file as stored, BOM included
        raise LoaderError(
            f"{source}: not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})"
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- titles ---------------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_H1 = re.compile(r"^ {0,3}=+[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown_title(text: str) -> str:
    """The first level-1 heading, else the first heading of any level, else ""."""
    first_any = ""
    in_fence = False  # "# comment" lines inside code blocks are not headings
    previous = ""
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            heading = _ATX_HEADING.match(line)
            if heading and len(heading.group(1)) == 1:
                return heading.group(2).strip()
            if _SETEXT_H1.match(line) and previous.strip():
                return previous.strip()
            if heading and not first_any:
                first_any = heading.group(2).strip()
        previous = "" if in_fence else line
    return first_any


# --- HTML -----------------------------------------------------------------------


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
