"""PDF: the text layer, page by page, with pypdf (imported only when a PDF is read)."""

from __future__ import annotations

import io

from pgask.loaders.errors import LoaderError
from pgask.loaders.text import clean

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


def parse_pdf(data: bytes) -> tuple[str, str, dict]:
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
        pages = [clean(page.extract_text() or "") for page in reader.pages]
        if not pages:
            raise LoaderError("damaged or unreadable PDF (no pages found)")
        info = reader.metadata
        title = clean(str(info.title or "")) if info is not None else ""
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
