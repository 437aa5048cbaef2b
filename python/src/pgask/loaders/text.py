"""Markdown, plain text and reStructuredText (kept as-is): decoding and titles.

Parsers take the file's bytes and return (title, content, extra metadata); their LoaderErrors
give the reason only, and load_file puts the file name in front.
"""

from __future__ import annotations

import codecs

from pgask.loaders.errors import LoaderError
from pgask.text.markdown import markdown_headings


def parse_text(data: bytes) -> tuple[str, str, dict]:
    return "", decode(data), {}


def parse_markdown(data: bytes) -> tuple[str, str, dict]:
    text = decode(data)
    return markdown_title(text), text, {}


def decode(data: bytes) -> str:
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
    return normalize_newlines(text)


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def markdown_title(text: str) -> str:
    """The first level-1 heading, else the first heading of any level, else ""."""
    titles = [(level, title) for level, title in markdown_headings(text) if title]
    top = [title for level, title in titles if level == 1]
    return (top or [title for _, title in titles] or [""])[0]


def clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and extracted text has stray ones.
    return normalize_newlines(text.replace("\x00", "")).strip()
