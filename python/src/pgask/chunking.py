"""Split document text into token-bounded chunks for embedding.

Text is split recursively - paragraphs, then sentences, then words, then raw
characters - only as far as each piece needs to fit within ``max_tokens``. The
pieces are then packed greedily back into chunks as large as the limit allows.
Every chunk is a verbatim slice of the source (``content == text[start:end]``),
so answers can always be traced back to character offsets in the document.

Pure module: standard library only, no model required. Callers pass the
embedding model's tokenizer as ``count_tokens`` so limits match the model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

TokenCounter = Callable[[str], int]

MAX_TOKENS_LIMIT = 8192

__all__ = [
    "MAX_TOKENS_LIMIT",
    "Chunk",
    "TokenCounter",
    "chunk_text",
    "simple_token_count",
    "split_sentences",
]


@dataclass(frozen=True)
class Chunk:
    """A verbatim slice of a document with its offsets and token count."""

    ordinal: int  # 0-based position in the document
    content: str  # exactly text[start:end]
    start: int  # character offset into the source text (inclusive)
    end: int  # character offset (exclusive)
    token_count: int  # count_tokens(content)


class _Piece(NamedTuple):
    start: int
    end: int
    tokens: int


# CJK ideographs and kana count as one token each, as word-piece tokenizers split
# them that way; a plain \w+ would count a whole unspaced CJK sentence as one token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
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


def chunk_text(
    text: str,
    *,
    max_tokens: int = 500,
    overlap: int = 0,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens each.

    With ``overlap`` > 0 every chunk after the first also repeats up to ``overlap``
    tokens from the end of the previous chunk, starting at a sentence or word boundary.
    The limit holds for every chunk except a single character that alone exceeds it.
    """
    _validate(text, max_tokens, overlap, count_tokens)
    count = count_tokens or simple_token_count
    start, end = _trim(text, 0, len(text))
    if start == end:
        return []
    pieces = list(_atomize(text, start, end, 0, max_tokens, count))
    return _pack(text, pieces, max_tokens, overlap, count)


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


_SPLITTERS = (_paragraph_spans, _sentence_spans, _word_spans)


def _atomize(
    text: str, start: int, end: int, level: int, limit: int, count: TokenCounter
) -> Iterator[_Piece]:
    """Yield pieces of at most ``limit`` tokens covering text[start:end], as coarse as possible.

    The caller only descends here when text[start:end] is too big, so a splitter that
    returns the span unchanged goes straight to the next level without recounting.
    """
    if level == len(_SPLITTERS):
        yield from _hard_split(text, start, end, limit, count)
        return
    for a, b in _SPLITTERS[level](text, start, end):
        if (a, b) != (start, end):
            tokens = count(text[a:b])
            if tokens <= limit:
                yield _Piece(a, b, tokens)
                continue
        yield from _atomize(text, a, b, level + 1, limit, count)


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
    text: str, pieces: list[_Piece], limit: int, overlap: int, count: TokenCounter
) -> list[Chunk]:
    chunks: list[Chunk] = []
    i = 0
    while i < len(pieces):
        start, taken = pieces[i].start, None
        # Shrink the overlap so that at least the next piece still fits after it.
        budget = min(overlap, limit - pieces[i].tokens)
        if budget > 0 and chunks:
            head = _overlap_head(text, chunks[-1], budget, count)
            if head is not None:
                taken = _take(text, pieces, i, head[0], head[1], limit, count)
                start = head[0]
        if taken is None:
            # No overlap wanted, none possible, or it leaves no room for the next piece.
            start = pieces[i].start
            taken = _take(text, pieces, i, start, 0, limit, count)
        assert taken is not None  # without a head at least one piece is always taken
        j, tokens = taken
        end = pieces[j - 1].end
        chunks.append(Chunk(len(chunks), text[start:end], start, end, tokens))
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
) -> tuple[int, int] | None:
    """Extend a chunk that begins at ``start`` over pieces[i:j]; return (j, tokens).

    Piece counts are summed to choose j cheaply, then the assembled text is counted
    once, because tokenizers are not additive across boundaries; if it is over the
    limit, j is bisected down. None when an overlap head leaves no room for pieces[i].
    """
    has_head = start < pieces[i].start
    total, j = head_tokens, i
    while j < len(pieces) and total + pieces[j].tokens <= limit:
        total += pieces[j].tokens
        j += 1
    if not has_head and j <= i + 1:
        return i + 1, pieces[i].tokens  # a lone piece was already measured exactly
    if j == i:
        return None

    def measure(k: int) -> int:
        return count(text[start : pieces[k - 1].end])

    tokens = measure(j)
    if tokens <= limit:
        return j, tokens
    fit = _bisect(measure, i + 1, j, limit)
    if fit is None and not has_head:
        return i + 1, pieces[i].tokens
    return fit


def _overlap_head(
    text: str, prev: Chunk, overlap: int, count: TokenCounter
) -> tuple[int, int] | None:
    """Where the next chunk should start inside ``prev`` to repeat <= ``overlap`` tokens.

    Returns (position, tokens of text[position:prev.end]) at the earliest word or
    sentence start that fits, moved forward to a sentence start when one lies in that
    tail, so overlaps begin at natural reading points.
    """
    sentences = sorted(
        {_trim(text, cut, prev.end)[0] for cut in _sentence_cuts(text, prev.start, prev.end)}
        - {prev.end}
    )
    words = {m.start() for m in _WORD_START.finditer(text, prev.start + 1, prev.end)}
    starts = sorted(words.union(sentences) - {prev.start})

    def tail_tokens(pos: int) -> int:
        return count(text[pos : prev.end])

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
    return pos, tail_tokens(pos)
