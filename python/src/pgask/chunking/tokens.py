"""The ``tokens`` method: fixed windows that ignore the text's structure."""

from __future__ import annotations

from pgask.chunking.chunk import Chunk, as_chunks, validate
from pgask.chunking.packer import chunk_span
from pgask.text.sentences import word_spans
from pgask.text.tokens import TokenCounter, simple_token_count


def chunk_tokens(
    text: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """The ``tokens`` method: windows of up to ``max_tokens`` tokens, blind to structure.

    Each window is filled as far as whole words allow; with ``overlap`` > 0 it starts up to
    ``overlap`` tokens back into the previous one, at a word boundary.
    """
    validate(text, max_tokens, overlap, count_tokens)
    return split(text, max_tokens, overlap, count_tokens or simple_token_count)


# On validated arguments (see chunking.config.chunk_document for the units).
def split(text: str, limit: int, overlap: int, count: TokenCounter,
          prepend_headings: bool = False) -> list[Chunk]:
    return as_chunks(text, chunk_span(text, (word_spans,), limit, overlap, count,
                                       prefer_sentences=False))
