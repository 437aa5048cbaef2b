"""HTML as Markdown-ish text, with the standard library's HTMLParser.

`#` headings, `-` list items, ``` fences for <pre>, `a | b` table rows; page chrome (<head>,
scripts, styles, <nav>, the PostgreSQL manual's navheader/navfooter) is dropped. Pure: the
standard library only.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser


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
