"""The ``markdown`` method: chunks of heading sections (short neighbours together), with their
heading paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pgask.chunking.chunk import (
    Chunk,
    Piece,
    validate,
    validate_prepend_headings,
    with_context,
)
from pgask.chunking.packer import atomize, pack
from pgask.text.markdown import Block, Section, markdown_sections
from pgask.text.sentences import line_spans, sentence_spans, trim, word_spans
from pgask.text.tokens import TokenCounter, simple_token_count, truncate_to_tokens

HEADING_SEPARATOR = " > "

_BLOCK_SPLITTERS = {
    "heading": (word_spans,),
    "code": (line_spans, word_spans),
    "table": (line_spans, word_spans),
    "text": (sentence_spans, word_spans),  # a text block is one paragraph or list already
}


def chunk_markdown(
    text: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
    prepend_headings: bool = True,
) -> list[Chunk]:
    """The ``markdown`` method: chunks of heading sections, with their heading paths."""
    validate(text, max_tokens, overlap, count_tokens)
    validate_prepend_headings(prepend_headings)
    return split(text, max_tokens, overlap, count_tokens or simple_token_count,
                 prepend_headings)


# On validated arguments (see chunking.config.chunk_document for the units).
def split(text: str, limit: int, overlap: int, count: TokenCounter,
          prepend_headings: bool) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in _grouped(text, markdown_sections(text), limit, count):
        path = HEADING_SEPARATOR.join(section.path)
        wanted = truncate_to_tokens(path, limit // 2, count) if prepend_headings else ""
        context, pieces = _pack_with_context(
            text, lambda budget, s=section: _section_pieces(text, s, budget, count),
            wanted, limit, overlap, count,
        )
        for p in pieces:
            metadata = {"heading_path": path} if path else {}
            chunks.append(Chunk(len(chunks), text[p.start : p.end], p.start, p.end, p.tokens,
                                metadata, context))
    return chunks


def _grouped(text: str, sections: list[Section], limit: int, count: TokenCounter
             ) -> list[Section]:
    """Runs of consecutive sections that fit in one chunk together, each as one section under
    the heading path they share. A reference page of short sections (the PostgreSQL manual's
    Parameters, one per option) would otherwise be chunks of a few dozen tokens, too little
    for an embedding or BM25 to tell apart; the sub-headings stay in the chunk's text."""
    grouped: list[Section] = []
    for section in sections:
        if grouped:
            last = grouped[-1]
            path = _shared(last.path, section.path)
            blocks = last.blocks + section.blocks
            context = HEADING_SEPARATOR.join(path)
            if count(with_context(context, text[blocks[0].start : blocks[-1].end])) <= limit:
                grouped[-1] = Section(path, blocks)
                continue
        grouped.append(section)
    return grouped


def _shared(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _section_pieces(text: str, section: Section, limit: int, count: TokenCounter
                    ) -> list[Piece]:
    return [piece for block in section.blocks
            for piece in _block_pieces(text, block, limit, count)]


def _block_pieces(text: str, block: Block, limit: int, count: TokenCounter
                  ) -> Iterator[Piece]:
    """The block whole when it fits, else cut by the splitters that suit its kind."""
    start, end = trim(text, block.start, block.end)  # a CRLF line ends in "\r"
    tokens = count(text[start:end])
    if tokens <= limit:
        return iter([Piece(start, end, tokens)])
    return atomize(text, start, end, _BLOCK_SPLITTERS[block.kind], limit, count)


def _pack_with_context(
    text: str,
    pieces_for: Callable[[int], list[Piece]],
    context: str,
    limit: int,
    overlap: int,
    count: TokenCounter,
) -> tuple[str, list[Piece]]:
    """Pack so that count(context + newline + chunk) <= limit; returns (context used, chunks).

    Pieces are counted without the context (their counts are summed while packing), so the
    context's cost comes off the limit first. Tokenizers are not additive across the join,
    so every chunk is then counted with its context and, if any is over, all are packed again
    with the budget lowered by the excess. When no budget is left, the context is dropped.
    """
    # Only what the context adds: a counter's own prefix (count("")) is in every piece count.
    budget = limit - (count(with_context(context, "")) - count("")) if context else 0
    while budget >= 1:
        packed = pack(text, pieces_for(budget), budget, min(overlap, budget - 1), count, True)
        full = [count(with_context(context, text[p.start : p.end])) for p in packed]
        excess = max(full, default=limit) - limit
        if excess <= 0:
            return context, [p._replace(tokens=t) for p, t in zip(packed, full, strict=True)]
        budget -= excess
    return "", pack(text, pieces_for(limit), limit, overlap, count, True)
