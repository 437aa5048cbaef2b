"""HTML files: title and Markdown-ish text (the conversion is pgask.text.html)."""

from __future__ import annotations

from pgask.loaders.text import decode
from pgask.text.html import html_to_text


def parse_html(data: bytes) -> tuple[str, str, dict]:
    title, text = html_to_text(decode(data))
    return title, text, {}
