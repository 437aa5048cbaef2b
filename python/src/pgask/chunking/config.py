"""How a pipeline chunks (ChunkerConfig), and chunk_document / chunk_rows, which run it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from pgask.chunking import html, markdown, recursive, tokens
from pgask.chunking.chunk import MAX_TOKENS_LIMIT, Chunk, is_int
from pgask.text.tokens import TokenCounter
from pgask.tokenization import TOKENIZERS, get_counter

CHUNK_METHODS = ("html", "markdown", "recursive", "tokens")

_CHUNKERS: dict[str, Callable[[str, int, int, TokenCounter, bool], list[Chunk]]] = {
    "html": html.split,
    "markdown": markdown.split,
    "recursive": recursive.split,
    "tokens": tokens.split,
}


@dataclass(frozen=True)
class ChunkerConfig:
    """How a pipeline chunks: method, size, overlap, tokenizer; validated on creation."""

    method: str = "recursive"
    max_tokens: int = 500
    overlap: int = 0
    tokenizer: str = "minilm"
    prepend_headings: bool = True  # markdown/html: embed the heading path before each chunk

    def __post_init__(self) -> None:
        _require(self.method in CHUNK_METHODS, "method",
                 f"one of {', '.join(CHUNK_METHODS)}", self.method)
        _require(is_int(self.max_tokens) and 1 <= self.max_tokens <= MAX_TOKENS_LIMIT,
                 "max_tokens", f"an integer between 1 and {MAX_TOKENS_LIMIT}", self.max_tokens)
        max_tokens = self.max_tokens
        _require(is_int(self.overlap) and 0 <= self.overlap < max_tokens, "overlap",
                 f"an integer >= 0 and < max_tokens ({max_tokens})", self.overlap)
        _require(self.tokenizer in TOKENIZERS, "tokenizer",
                 f"one of {', '.join(TOKENIZERS)}", self.tokenizer)
        _require(isinstance(self.prepend_headings, bool), "prepend_headings", "true or false",
                 self.prepend_headings)

    @classmethod
    def from_dict(cls, settings: dict | None) -> ChunkerConfig:
        """A config from a pipeline's JSON settings; None or {} gives the defaults."""
        if settings is None:
            return cls()
        if not isinstance(settings, dict):
            raise ValueError(f"chunker must be an object (dict), got {type(settings).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in settings if key not in known)
        if unknown:
            raise ValueError(f"chunker.{unknown[0]} is not a chunker setting; "
                             f"expected keys: {', '.join(known)}")
        return cls(**settings)

    def to_dict(self) -> dict:
        return asdict(self)


def _require(ok: bool, key: str, expected: str, got: object) -> None:
    if not ok:
        raise ValueError(f"chunker.{key} must be {expected}, got {got!r}")


def chunk_document(
    text: str,
    config: ChunkerConfig,
    *,
    embed_limit: tuple[TokenCounter, int] | None = None,
) -> list[Chunk]:
    """Chunks of ``text`` as ``config`` says; within ``embed_limit`` too when given.

    ``embed_limit=(counter, limit)`` is the embedding model's input size: every chunk then
    also has ``counter(chunk.embed_text) <= limit`` (see the module docstring for how).
    """
    if not isinstance(config, ChunkerConfig):
        raise ValueError(f"config must be a ChunkerConfig, got {type(config).__name__}")
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    count = get_counter(config.tokenizer)
    chunker = _CHUNKERS[config.method]
    if embed_limit is None:
        return chunker(text, config.max_tokens, config.overlap, count, config.prepend_headings)
    embed_count, limit = _checked_embed_limit(embed_limit)

    def both(part: str) -> int:  # <= max_tokens * limit exactly when both limits hold
        return max(count(part) * limit, embed_count(part) * config.max_tokens)

    chunks = chunker(text, config.max_tokens * limit, config.overlap * limit, both,
                     config.prepend_headings)
    return [replace(c, token_count=count(c.embed_text)) for c in chunks]


def _checked_embed_limit(embed_limit: object) -> tuple[TokenCounter, int]:
    if not (isinstance(embed_limit, tuple) and len(embed_limit) == 2
            and callable(embed_limit[0]) and is_int(embed_limit[1]) and embed_limit[1] >= 1):
        raise ValueError(f"embed_limit must be a (counter, limit) pair with a callable counter "
                         f"and an integer limit >= 1, got {embed_limit!r}")
    embed_count, limit = embed_limit
    if embed_count("") >= limit:
        raise ValueError(f"embed_limit leaves no room for text: its counter gives "
                         f"{embed_count('')} tokens for an empty text, limit {limit}")
    return embed_count, limit


def chunk_rows(document: str, method: str, max_tokens: int, overlap: int, tokenizer: str
               ) -> list[tuple]:
    """rag.chunk's rows: (ordinal, content, token_count, char_start, char_end, metadata as
    JSON text, embed_text). Arguments are validated by the SQL wrapper first."""
    config = ChunkerConfig(method=method, max_tokens=max_tokens, overlap=overlap,
                           tokenizer=tokenizer)
    return [(c.ordinal, c.content, c.token_count, c.start, c.end, json.dumps(c.metadata),
             c.embed_text) for c in chunk_document(document, config)]
