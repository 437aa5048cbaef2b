"""Files on disk: which to load (directories walked), checks, and the parser per format."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgask.loaders.docx import parse_docx
from pgask.loaders.errors import LoaderError
from pgask.loaders.html import parse_html
from pgask.loaders.pdf import parse_pdf
from pgask.loaders.text import parse_markdown, parse_text

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


_PARSERS = {
    "markdown": parse_markdown,
    "text": parse_text,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
}
