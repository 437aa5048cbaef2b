"""DOCX: paragraphs (Word's heading and list styles as Markdown) and tables, with
python-docx (imported only when a DOCX is read)."""

from __future__ import annotations

import io

from pgask.loaders.errors import LoaderError
from pgask.loaders.text import clean, markdown_title

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"


def text_from_docx(data: bytes) -> str:
    """A Word document as Markdown-ish text: headings, list items, paragraphs, table rows."""
    return _read_docx(data)[1]


def parse_docx(data: bytes) -> tuple[str, str, dict]:
    title, text = _read_docx(data)
    return title or markdown_title(text), text, {}


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
    text = clean(item.text)
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
            cells.append(" ".join(clean(cell.text).split()))
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
