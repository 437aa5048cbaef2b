"""The ``html`` method: the page as Markdown (pgask.text.html), then ``markdown``."""

from __future__ import annotations

from pgask.chunking import markdown
from pgask.chunking.chunk import Chunk, validate, validate_prepend_headings
from pgask.text.html import markdown_from_html
from pgask.text.tokens import TokenCounter, simple_token_count


def chunk_html(
    html: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
    prepend_headings: bool = True,
) -> list[Chunk]:
    """The ``html`` method: ``chunk_markdown(markdown_from_html(html))``.

    Offsets (and ``content``) refer to ``pgask.text.markdown_from_html(html)``.
    """
    if not isinstance(html, str):
        raise ValueError(f"html must be a str, got {type(html).__name__}")
    validate(html, max_tokens, overlap, count_tokens)
    validate_prepend_headings(prepend_headings)
    return split(html, max_tokens, overlap, count_tokens or simple_token_count, prepend_headings)


# On validated arguments (see chunking.config.chunk_document for the units).
def split(html: str, limit: int, overlap: int, count: TokenCounter,
          prepend_headings: bool) -> list[Chunk]:
    return markdown.split(markdown_from_html(html), limit, overlap, count, prepend_headings)
