"""Split document text into token-bounded chunks for embedding, by one of four methods.

Methods (CHUNK_METHODS; chosen by name through ChunkerConfig and chunk_document):

- ``recursive`` (chunk_text): paragraphs, then sentences, then words, then raw characters -
  only as far as each piece needs to fit within ``max_tokens`` - packed greedily back into
  chunks as large as the limit allows.
- ``tokens`` (chunk_tokens): fixed windows of ``max_tokens`` tokens that ignore the text's
  structure; windows end at word boundaries, and only a word longer than a window is cut.
- ``markdown`` (chunk_markdown): one section per heading, and no chunk spans two sections (a
  heading with no text of its own joins the next section). Fenced code blocks and tables stay
  whole where they fit and are cut at line boundaries where they do not; paragraphs and lists
  split as in ``recursive``. Every chunk records its heading path (``Install > Debian >
  pgvector``) in ``metadata["heading_path"]`` and, with ``prepend_headings``, carries it as its
  ``context``: what gets embedded is ``embed_text``, the context, a newline, then the content.
- ``html`` (chunk_html): pgask.loaders.markdown_from_html, then ``markdown``. The offsets of
  html chunks index the converted text, not the HTML source: an offset into markup cannot point
  at anything readable, and the converted text is what `pgask ingest` stores for HTML files.

Guarantees of every method: ``content == text[start:end]``, trimmed and non-empty, so a
citation points at an exact span; the chunks cover all non-whitespace of the text, in order;
and ``count_tokens(chunk.embed_text) <= max_tokens``, context included, unless one character
alone exceeds the limit. ``token_count`` is that count. A context gets at most half the limit:
a longer heading path is cut to fit there (metadata keeps it whole).

The embedding model's limit (chunk_document's ``embed_limit=(counter, limit)``): the configured
tokenizer and max_tokens are the user's choice (500 cl100k tokens, say), the model's input size
is not (MiniLM sees 254 word pieces and silently ignores the rest). Both must hold, so the
chunker runs once, with one combined counter in a finer unit: ``max(count(s) * limit,
embed_count(s) * max_tokens)`` against the limit ``max_tokens * limit``, which it meets exactly
when ``count(s) <= max_tokens`` and ``embed_count(s) <= limit`` (integers, so no rounding).
Chunks are thus sized by whichever limit is stricter for the text at hand; the overlap is
``overlap * limit`` in that unit, so it never exceeds ``overlap`` configured tokens, and
``token_count`` is given in the configured tokenizer. The embedding counter may count a fixed
prefix as well, e.g. ``lambda s: count(f"{title}\n{s}")`` for a title embedded in front of
every chunk: chunkers take ``count("")`` as such a prefix's cost and leave it out when they add
up the counts of pieces, so chunks are still filled to the limit.

Pure module: the standard library and pgask.tokenization (which loads tokenizers lazily).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import NamedTuple

from pgask.tokenization import TOKENIZERS, get_counter

TokenCounter = Callable[[str], int]

MAX_TOKENS_LIMIT = 8192
CHUNK_METHODS = ("html", "markdown", "recursive", "tokens")
HEADING_SEPARATOR = " > "

__all__ = [
    "CHUNK_METHODS",
    "HEADING_SEPARATOR",
    "MAX_TOKENS_LIMIT",
    "Chunk",
    "ChunkerConfig",
    "TokenCounter",
    "chunk_document",
    "chunk_html",
    "chunk_markdown",
    "chunk_rows",
    "chunk_text",
    "chunk_tokens",
    "markdown_headings",
    "simple_token_count",
    "split_sentences",
    "truncate_to_tokens",
]


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
        return _with_context(self.context, self.content)


def _with_context(context: str, content: str) -> str:
    return f"{context}\n{content}" if context else content


class _Piece(NamedTuple):
    start: int
    end: int
    tokens: int


# CJK ideographs and kana count as one token each, as word-piece tokenizers split
# them that way; a plain \w+ would count a whole unspaced CJK sentence as one token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NEWLINE = re.compile(r"\n")
_WORD = re.compile(r"\S+")
_WORD_START = re.compile(r"(?<=\s)\S")
# Western terminators only end a sentence before whitespace (so 3.14 and example.com
# stay whole); CJK ones end it outright since CJK text has no spaces; newlines always do.
_SENTENCE_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]\u00bb]*(?=\s)|[。！？]+[」』”’）)]*|\n"
)
_CLOSERS = "\"')]\u201d\u2019\u00bb"
_OPENERS = "([{\"'\u201c\u2018"
_ABBREVIATIONS = frozenset(
    "al approx ca cf dept dr eq eqs fig figs jr mr mrs ms prof resp sr vol vs viz".split()
)
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g / i.e / U.S / a.m (final dot excluded)


def simple_token_count(text: str) -> int:
    """Approximate token count: words, single punctuation marks and CJK characters."""
    return len(_TOKEN.findall(text))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences in ``text``, trimmed and non-empty."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return list(_sentence_spans(text, 0, len(text)))


def truncate_to_tokens(text: str, limit: int, count: TokenCounter) -> str:
    """The longest run of ``text``'s leading words, single-spaced, within ``limit`` tokens."""
    words = text.split()
    joined = " ".join(words)
    if count(joined) <= limit:
        return joined
    fits, too_many = 0, len(words)  # count(first `fits` words) <= limit < count(`too_many`)
    while too_many - fits > 1:
        mid = (fits + too_many) // 2
        if count(" ".join(words[:mid])) <= limit:
            fits = mid
        else:
            too_many = mid
    return " ".join(words[:fits])


# --- the four methods -----------------------------------------------------------


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
    _validate(text, max_tokens, overlap, count_tokens)
    return _recursive(text, max_tokens, overlap, count_tokens or simple_token_count)


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
    _validate(text, max_tokens, overlap, count_tokens)
    return _tokens(text, max_tokens, overlap, count_tokens or simple_token_count)


def chunk_markdown(
    text: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
    prepend_headings: bool = True,
) -> list[Chunk]:
    """The ``markdown`` method: chunks within heading sections, with their heading paths."""
    _validate(text, max_tokens, overlap, count_tokens)
    _validate_prepend_headings(prepend_headings)
    return _markdown(text, max_tokens, overlap, count_tokens or simple_token_count,
                     prepend_headings)


def chunk_html(
    html: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
    prepend_headings: bool = True,
) -> list[Chunk]:
    """The ``html`` method: ``chunk_markdown(markdown_from_html(html))``.

    Offsets (and ``content``) refer to ``pgask.loaders.markdown_from_html(html)``.
    """
    if not isinstance(html, str):
        raise ValueError(f"html must be a str, got {type(html).__name__}")
    _validate(html, max_tokens, overlap, count_tokens)
    _validate_prepend_headings(prepend_headings)
    return _html(html, max_tokens, overlap, count_tokens or simple_token_count, prepend_headings)


# The methods behind the public functions, on validated arguments; chunk_document calls them
# with limits in its own unit (see the module docstring), beyond what the public ones accept.


def _recursive(text: str, limit: int, overlap: int, count: TokenCounter,
               prepend_headings: bool = False) -> list[Chunk]:
    return _as_chunks(text, _chunk_span(text, _RECURSIVE, limit, overlap, count,
                                        prefer_sentences=True))


def _tokens(text: str, limit: int, overlap: int, count: TokenCounter,
            prepend_headings: bool = False) -> list[Chunk]:
    return _as_chunks(text, _chunk_span(text, (_word_spans,), limit, overlap, count,
                                        prefer_sentences=False))


def _markdown(text: str, limit: int, overlap: int, count: TokenCounter,
              prepend_headings: bool) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in _markdown_sections(text):
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


def _html(html: str, limit: int, overlap: int, count: TokenCounter,
          prepend_headings: bool) -> list[Chunk]:
    from pgask.loaders import markdown_from_html  # loaders imports this module

    return _markdown(markdown_from_html(html), limit, overlap, count, prepend_headings)


_CHUNKERS: dict[str, Callable[[str, int, int, TokenCounter, bool], list[Chunk]]] = {
    "html": _html,
    "markdown": _markdown,
    "recursive": _recursive,
    "tokens": _tokens,
}


def _validate_prepend_headings(prepend_headings: object) -> None:
    if not isinstance(prepend_headings, bool):
        raise ValueError(f"prepend_headings must be a bool, got {prepend_headings!r}")


def _validate(text: object, max_tokens: object, overlap: object, count_tokens: object) -> None:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens!r}")
    if not _is_int(overlap) or not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be >= 0 and < max_tokens ({max_tokens}), got {overlap!r}")
    if count_tokens is not None and not callable(count_tokens):
        raise ValueError(
            f"count_tokens must be callable or None, got {type(count_tokens).__name__}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_chunks(text: str, pieces: list[_Piece]) -> list[Chunk]:
    return [Chunk(i, text[p.start : p.end], p.start, p.end, p.tokens)
            for i, p in enumerate(pieces)]


def _chunk_span(
    text: str, splitters: tuple, limit: int, overlap: int, count: TokenCounter,
    *, prefer_sentences: bool,
) -> list[_Piece]:
    start, end = _trim(text, 0, len(text))
    if start == end:
        return []
    pieces = list(_atomize(text, start, end, splitters, limit, count))
    return _pack(text, pieces, limit, overlap, count, prefer_sentences)


# --- configuration --------------------------------------------------------------


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
        _require(_is_int(self.max_tokens) and 1 <= self.max_tokens <= MAX_TOKENS_LIMIT,
                 "max_tokens", f"an integer between 1 and {MAX_TOKENS_LIMIT}", self.max_tokens)
        max_tokens = self.max_tokens
        _require(_is_int(self.overlap) and 0 <= self.overlap < max_tokens, "overlap",
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
            and callable(embed_limit[0]) and _is_int(embed_limit[1]) and embed_limit[1] >= 1):
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


# --- Markdown structure ---------------------------------------------------------


class _Block(NamedTuple):
    start: int
    end: int
    kind: str  # "heading", "code" (a fenced block), "table" or "text"
    level: int = 0  # headings: 1-6
    title: str = ""  # headings: the heading text


class _Section(NamedTuple):
    path: tuple[str, ...]  # the titles of the enclosing headings, outermost first
    blocks: list[_Block]


_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|(?=\s*$))(.*?)(?:[ \t]+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of the ATX and setext headings of ``text``, outside code fences."""
    return [(b.level, b.title) for b in _markdown_blocks(text) if b.kind == "heading"]


def _markdown_blocks(text: str) -> list[_Block]:
    """Headings, fenced code blocks, tables and runs of text lines, in document order."""
    blocks: list[_Block] = []
    run: list[tuple[int, str]] = []  # the current run of non-blank text lines: (offset, line)
    fence: tuple[str, int] | None = None  # the open fence's marker and offset

    def end_run() -> None:
        if run:
            blocks.append(_text_block(run))
            run.clear()

    pos = 0
    for line in text.split("\n"):
        start, end, pos = pos, pos + len(line), pos + len(line) + 1
        if fence is not None:
            if _closes_fence(line, fence[0]):
                blocks.append(_Block(fence[1], end, "code"))
                fence = None
        elif opening := _FENCE_OPEN.match(line):
            end_run()
            fence = (opening.group(1), start)
        elif heading := _ATX_HEADING.match(line):
            end_run()
            blocks.append(_Block(start, end, "heading", len(heading.group(1)),
                                 heading.group(2).strip()))
        elif _is_setext_underline(line, run):
            (title_start, title), = run
            run.clear()
            level = 1 if line.strip()[0] == "=" else 2
            blocks.append(_Block(title_start, end, "heading", level, title.strip()))
        elif not line.strip():
            end_run()
        else:
            run.append((start, line))
    end_run()
    if fence is not None:  # an unclosed fence runs to the end of the document
        blocks.append(_Block(fence[1], len(text), "code"))
    return blocks


def _closes_fence(line: str, marker: str) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return (indent <= 3 and len(stripped) >= len(marker)
            and stripped == marker[0] * len(stripped))


def _is_setext_underline(line: str, run: list[tuple[int, str]]) -> bool:
    # Only a one-line paragraph is taken as a setext title; "- item\n---" is a list and a rule.
    return (len(run) == 1 and _SETEXT_UNDERLINE.match(line) is not None
            and not _LIST_ITEM.match(run[0][1]))


def _text_block(run: list[tuple[int, str]]) -> _Block:
    start, end = run[0][0], run[-1][0] + len(run[-1][1])
    is_table = len(run) >= 2 and all("|" in line for _, line in run)
    return _Block(start, end, "table" if is_table else "text")


def _markdown_sections(text: str) -> list[_Section]:
    """The blocks grouped under their headings, with each section's heading path."""
    sections = [_Section((), [])]
    open_headings: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    for block in _markdown_blocks(text):
        if block.kind == "heading":
            while open_headings and open_headings[-1][0] >= block.level:
                open_headings.pop()
            open_headings.append((block.level, block.title))
            sections.append(_Section(tuple(t for _, t in open_headings if t), []))
        sections[-1].blocks.append(block)
    return _merge_bare_headings([s for s in sections if s.blocks])


def _merge_bare_headings(sections: list[_Section]) -> list[_Section]:
    """Sections that are only a heading join the next section, so no chunk is just a title."""
    merged: list[_Section] = []
    waiting: list[_Block] = []
    for i, section in enumerate(sections):
        bare = all(b.kind == "heading" for b in section.blocks)
        if bare and i + 1 < len(sections):
            waiting.extend(section.blocks)
            continue
        merged.append(_Section(section.path, waiting + section.blocks))
        waiting = []
    return merged


def _section_pieces(text: str, section: _Section, limit: int, count: TokenCounter
                    ) -> list[_Piece]:
    return [piece for block in section.blocks
            for piece in _block_pieces(text, block, limit, count)]


def _block_pieces(text: str, block: _Block, limit: int, count: TokenCounter
                  ) -> Iterator[_Piece]:
    """The block whole when it fits, else cut by the splitters that suit its kind."""
    start, end = _trim(text, block.start, block.end)  # a CRLF line ends in "\r"
    tokens = count(text[start:end])
    if tokens <= limit:
        return iter([_Piece(start, end, tokens)])
    return _atomize(text, start, end, _BLOCK_SPLITTERS[block.kind], limit, count)


def _pack_with_context(
    text: str,
    pieces_for: Callable[[int], list[_Piece]],
    context: str,
    limit: int,
    overlap: int,
    count: TokenCounter,
) -> tuple[str, list[_Piece]]:
    """Pack so that count(context + newline + chunk) <= limit; returns (context used, chunks).

    Pieces are counted without the context (their counts are summed while packing), so the
    context's cost comes off the limit first. Tokenizers are not additive across the join,
    so every chunk is then counted with its context and, if any is over, all are packed again
    with the budget lowered by the excess. When no budget is left, the context is dropped.
    """
    # Only what the context adds: a counter's own prefix (count("")) is in every piece count.
    budget = limit - (count(_with_context(context, "")) - count("")) if context else 0
    while budget >= 1:
        packed = _pack(text, pieces_for(budget), budget, min(overlap, budget - 1), count, True)
        full = [count(_with_context(context, text[p.start : p.end])) for p in packed]
        excess = max(full, default=limit) - limit
        if excess <= 0:
            return context, [p._replace(tokens=t) for p, t in zip(packed, full, strict=True)]
        budget -= excess
    return "", _pack(text, pieces_for(limit), limit, overlap, count, True)


# --- splitting ------------------------------------------------------------------


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _spans_between(
    text: str, start: int, end: int, cuts: Iterable[int]
) -> Iterator[tuple[int, int]]:
    prev = start
    for cut in itertools.chain(cuts, (end,)):
        a, b = _trim(text, prev, cut)
        if a < b:
            yield a, b
        prev = cut


def _paragraph_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cuts = (m.end() for m in _PARAGRAPH_BREAK.finditer(text, start, end))
    return _spans_between(text, start, end, cuts)


def _line_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cuts = (m.end() for m in _NEWLINE.finditer(text, start, end))
    return _spans_between(text, start, end, cuts)


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    return _spans_between(text, start, end, _sentence_cuts(text, start, end))


def _word_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    return (m.span() for m in _WORD.finditer(text, start, end))


def _sentence_cuts(text: str, start: int, end: int) -> Iterator[int]:
    for m in _SENTENCE_END.finditer(text, start, end):
        single_period = m.group().rstrip(_CLOSERS) == "."
        if single_period and _is_abbreviation(_word_before(text, m.start(), start)):
            continue
        yield m.end()


def _word_before(text: str, pos: int, lower_bound: int) -> str:
    # Abbreviations are short, so a few characters of look-back are enough.
    tail = text[max(lower_bound, pos - 16) : pos]
    if not tail or tail[-1].isspace():
        return ""
    return tail.split()[-1]


def _is_abbreviation(word: str) -> bool:
    word = word.lstrip(_OPENERS)
    if len(word) == 1:
        # Initials ("J. Smith"); the pronoun "I" usually ends a sentence.
        return word.isupper() and word != "I"
    return word.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


_RECURSIVE = (_paragraph_spans, _sentence_spans, _word_spans)
_BLOCK_SPLITTERS = {
    "heading": (_word_spans,),
    "code": (_line_spans, _word_spans),
    "table": (_line_spans, _word_spans),
    "text": (_sentence_spans, _word_spans),  # a text block is one paragraph or list already
}


def _atomize(
    text: str, start: int, end: int, splitters: tuple, limit: int, count: TokenCounter
) -> Iterator[_Piece]:
    """Yield pieces of at most ``limit`` tokens covering text[start:end], as coarse as possible.

    The caller only descends here when text[start:end] is too big, so a splitter that
    returns the span unchanged goes straight to the next one without recounting.
    """
    if not splitters:
        yield from _hard_split(text, start, end, limit, count)
        return
    split, finer = splitters[0], splitters[1:]
    for a, b in split(text, start, end):
        if (a, b) != (start, end):
            tokens = count(text[a:b])
            if tokens <= limit:
                yield _Piece(a, b, tokens)
                continue
        yield from _atomize(text, a, b, finer, limit, count)


def _hard_split(
    text: str, start: int, end: int, limit: int, count: TokenCounter
) -> Iterator[_Piece]:
    guess = 4 * limit  # ~4 characters per token; corrected from each cut made
    pos = start
    while pos < end:
        stop, tokens = _longest_prefix(text, pos, end, guess, limit, count)
        yield _Piece(pos, stop, tokens)
        guess = stop - pos
        pos = stop


def _longest_prefix(
    text: str, pos: int, end: int, guess: int, limit: int, count: TokenCounter
) -> tuple[int, int]:
    """Longest text[pos:stop] within ``limit`` as (stop, tokens); at least one character.

    Gallops from ``guess`` and then bisects, so each cut costs O(n log n) in its own
    length rather than in the length of the remaining text.
    """

    def measure(stop: int) -> int:
        return count(text[pos:stop])

    fit = None
    probe = min(pos + guess, end)
    while (tokens := measure(probe)) <= limit:
        fit = (probe, tokens)
        if probe == end:
            return fit
        probe = min(pos + 2 * (probe - pos), end)
    lo = fit[0] + 1 if fit else pos + 1
    return _bisect(measure, lo, probe, limit) or fit or (pos + 1, measure(pos + 1))


def _bisect(measure: Callable[[int], int], lo: int, hi: int, limit: int) -> tuple[int, int] | None:
    """Largest x in [lo, hi) with measure(x) <= limit, as (x, measure(x)).

    Assumes measure grows with x and measure(hi) > limit; None when nothing fits.
    """
    best = None
    while lo < hi:
        mid = (lo + hi) // 2
        tokens = measure(mid)
        if tokens <= limit:
            best = (mid, tokens)
            lo = mid + 1
        else:
            hi = mid
    return best


# --- packing --------------------------------------------------------------------


def _pack(
    text: str,
    pieces: list[_Piece],
    limit: int,
    overlap: int,
    count: TokenCounter,
    prefer_sentences: bool,
) -> list[_Piece]:
    """Greedy chunks over ``pieces``, as (start, end, tokens) spans of ``text``.

    ``count("")`` is what every count includes besides the text itself (a title that the
    counter puts in front, say): it is taken off each piece's count when counts are added up.
    """
    base = count("")
    chunks: list[_Piece] = []
    i = 0
    while i < len(pieces):
        start, taken = pieces[i].start, None
        # Shrink the overlap so that at least the next piece still fits after it.
        budget = min(overlap, limit - pieces[i].tokens)
        if budget > 0 and chunks:
            head = _overlap_head(text, chunks[-1], budget, count, base, prefer_sentences)
            if head is not None:
                taken = _take(text, pieces, i, head[0], head[1], limit, count, base)
                start = head[0]
        if taken is None:
            # No overlap wanted, none possible, or it leaves no room for the next piece.
            start = pieces[i].start
            taken = _take(text, pieces, i, start, base, limit, count, base)
        assert taken is not None  # without a head at least one piece is always taken
        j, tokens = taken
        chunks.append(_Piece(start, pieces[j - 1].end, tokens))
        i = j
    return chunks


def _take(
    text: str,
    pieces: list[_Piece],
    i: int,
    start: int,
    head_tokens: int,
    limit: int,
    count: TokenCounter,
    base: int,
) -> tuple[int, int] | None:
    """Extend a chunk that begins at ``start`` over pieces[i:j]; return (j, tokens).

    ``head_tokens`` counts text[start:pieces[i].start] (``base`` when that is empty).
    Piece counts are added up to choose j cheaply, then the assembled text is counted,
    because tokenizers are not additive across boundaries: if it is over the limit, j is
    bisected down; if it leaves room for more pieces, j is extended again from that count.
    None when an overlap head leaves no room for pieces[i].
    """
    has_head = start < pieces[i].start
    j = _extend(pieces, i, head_tokens, limit, base)
    if not has_head and j <= i + 1:
        return i + 1, pieces[i].tokens  # a lone piece was already measured exactly
    if j == i:
        return None

    def measure(k: int) -> int:
        return count(text[start : pieces[k - 1].end])

    tokens = measure(j)
    while tokens <= limit:
        further = _extend(pieces, j, tokens, limit, base)
        if further == j:
            return j, tokens
        further_tokens = measure(further)
        if further_tokens > limit:
            return _bisect(measure, j + 1, further, limit) or (j, tokens)
        j, tokens = further, further_tokens
    fit = _bisect(measure, i + 1, j, limit)
    if fit is None and not has_head:
        return i + 1, pieces[i].tokens
    return fit


def _extend(pieces: list[_Piece], j: int, total: int, limit: int, base: int) -> int:
    """How far past pieces[j] the chunk reaches when their counts, less ``base``, are added
    to ``total`` without passing ``limit``."""
    while j < len(pieces) and total + pieces[j].tokens - base <= limit:
        total += pieces[j].tokens - base
        j += 1
    return j


def _overlap_head(
    text: str, prev: _Piece, overlap: int, count: TokenCounter, base: int,
    prefer_sentences: bool,
) -> tuple[int, int] | None:
    """Where the next chunk should start inside ``prev`` to repeat <= ``overlap`` tokens.

    Returns (position, tokens of text[position:prev.end]) at the earliest word or
    sentence start that fits; with ``prefer_sentences``, moved forward to a sentence start
    when one lies in that tail, so overlaps begin at natural reading points. The tail's
    tokens are counted less ``base`` (see _pack).
    """
    sentences = sorted(
        {_trim(text, cut, prev.end)[0] for cut in _sentence_cuts(text, prev.start, prev.end)}
        - {prev.end}
    ) if prefer_sentences else []
    words = {m.start() for m in _WORD_START.finditer(text, prev.start + 1, prev.end)}
    starts = sorted(words.union(sentences) - {prev.start})

    def tail_tokens(pos: int) -> int:
        return count(text[pos : prev.end]) - base

    # Tail tokens shrink as the start moves right. Gallop leftwards from the end first
    # so that only short tails get counted, then bisect the last step.
    lo, hi, step = len(starts) - 1, len(starts), 1
    while lo >= 0 and tail_tokens(starts[lo]) <= overlap:
        hi, lo, step = lo, lo - step, step * 2
    lo = max(lo + 1, 0)
    while lo < hi:
        mid = (lo + hi) // 2
        if tail_tokens(starts[mid]) <= overlap:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(starts):
        return None
    pos = next((s for s in sentences if s >= starts[lo]), starts[lo])
    return pos, tail_tokens(pos) + base
