"""The ``recursive`` method: paragraphs, then sentences, then words, then characters."""

from __future__ import annotations

from pgask.chunking.chunk import Chunk, as_chunks, validate
from pgask.chunking.packer import chunk_span
from pgask.text.sentences import paragraph_spans, sentence_spans, word_spans
from pgask.text.tokens import TokenCounter, simple_token_count

SPLITTERS = (paragraph_spans, sentence_spans, word_spans)


def chunk_text(
    text: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """The ``recursive`` method: split ``text`` into chunks of at most ``max_tokens`` tokens.

    With ``overlap`` > 0 every chunk after the first also repeats up to ``overlap``
    tokens from the end of the previous chunk, starting at a sentence or word boundary.
    The limit holds for every chunk except a single character that alone exceeds it.
    """
    validate(text, max_tokens, overlap, count_tokens)
    return split(text, max_tokens, overlap, count_tokens or simple_token_count)


# On validated arguments (see chunking.config.chunk_document for the units).
def split(text: str, limit: int, overlap: int, count: TokenCounter,
          prepend_headings: bool = False) -> list[Chunk]:
    return as_chunks(text, chunk_span(text, SPLITTERS, limit, overlap, count,
                                       prefer_sentences=True))
