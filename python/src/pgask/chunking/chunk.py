"""The Chunk value, the spans chunkers pack, and the arguments every method checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

MAX_TOKENS_LIMIT = 8192


@dataclass(frozen=True)
class Chunk:
    """A verbatim slice of a document with its offsets, token count and context."""

    ordinal: int  # 0-based position in the document
    content: str  # exactly text[start:end]
    start: int  # character offset into the source text (inclusive)
    end: int  # character offset (exclusive)
    token_count: int  # count_tokens(embed_text): what the embedding model is given
    metadata: dict = field(default_factory=dict, hash=False)  # e.g. {"heading_path": "A > B"}
    context: str = ""  # embedded in front of the content, e.g. the heading path

    @property
    def embed_text(self) -> str:
        """The text to embed: the context, if any, on its own line before the content."""
        return with_context(self.context, self.content)


def with_context(context: str, content: str) -> str:
    return f"{context}\n{content}" if context else content


class Piece(NamedTuple):
    start: int
    end: int
    tokens: int


def validate_prepend_headings(prepend_headings: object) -> None:
    if not isinstance(prepend_headings, bool):
        raise ValueError(f"prepend_headings must be a bool, got {prepend_headings!r}")


def validate(text: object, max_tokens: object, overlap: object, count_tokens: object) -> None:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens!r}")
    if not is_int(overlap) or not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be >= 0 and < max_tokens ({max_tokens}), got {overlap!r}")
    if count_tokens is not None and not callable(count_tokens):
        raise ValueError(
            f"count_tokens must be callable or None, got {type(count_tokens).__name__}"
        )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_chunks(text: str, pieces: list[Piece]) -> list[Chunk]:
    return [Chunk(i, text[p.start : p.end], p.start, p.end, p.tokens)
            for i, p in enumerate(pieces)]
