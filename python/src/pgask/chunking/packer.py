"""Cut a span into pieces that fit a token limit, then pack pieces greedily into chunks.

Shared by every method: a method chooses the splitters (paragraphs, sentences, lines, words)
and the packer does the rest, overlap included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pgask.chunking.chunk import Piece
from pgask.text.sentences import WORD_START, sentence_cuts, trim
from pgask.text.tokens import TokenCounter


def chunk_span(
    text: str, splitters: tuple, limit: int, overlap: int, count: TokenCounter,
    *, prefer_sentences: bool,
) -> list[Piece]:
    start, end = trim(text, 0, len(text))
    if start == end:
        return []
    pieces = list(atomize(text, start, end, splitters, limit, count))
    return pack(text, pieces, limit, overlap, count, prefer_sentences)


def atomize(
    text: str, start: int, end: int, splitters: tuple, limit: int, count: TokenCounter
) -> Iterator[Piece]:
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
                yield Piece(a, b, tokens)
                continue
        yield from atomize(text, a, b, finer, limit, count)


def _hard_split(
    text: str, start: int, end: int, limit: int, count: TokenCounter
) -> Iterator[Piece]:
    guess = 4 * limit  # ~4 characters per token; corrected from each cut made
    pos = start
    while pos < end:
        stop, tokens = _longest_prefix(text, pos, end, guess, limit, count)
        yield Piece(pos, stop, tokens)
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
    return bisect(measure, lo, probe, limit) or fit or (pos + 1, measure(pos + 1))


def bisect(measure: Callable[[int], int], lo: int, hi: int, limit: int) -> tuple[int, int] | None:
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


def pack(
    text: str,
    pieces: list[Piece],
    limit: int,
    overlap: int,
    count: TokenCounter,
    prefer_sentences: bool,
) -> list[Piece]:
    """Greedy chunks over ``pieces``, as (start, end, tokens) spans of ``text``.

    ``count("")`` is what every count includes besides the text itself (a title that the
    counter puts in front, say): it is taken off each piece's count when counts are added up.
    """
    base = count("")
    chunks: list[Piece] = []
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
        chunks.append(Piece(start, pieces[j - 1].end, tokens))
        i = j
    return chunks


def _take(
    text: str,
    pieces: list[Piece],
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
            return bisect(measure, j + 1, further, limit) or (j, tokens)
        j, tokens = further, further_tokens
    fit = bisect(measure, i + 1, j, limit)
    if fit is None and not has_head:
        return i + 1, pieces[i].tokens
    return fit


def _extend(pieces: list[Piece], j: int, total: int, limit: int, base: int) -> int:
    """How far past pieces[j] the chunk reaches when their counts, less ``base``, are added
    to ``total`` without passing ``limit``."""
    while j < len(pieces) and total + pieces[j].tokens - base <= limit:
        total += pieces[j].tokens - base
        j += 1
    return j


def _overlap_head(
    text: str, prev: Piece, overlap: int, count: TokenCounter, base: int,
    prefer_sentences: bool,
) -> tuple[int, int] | None:
    """Where the next chunk should start inside ``prev`` to repeat <= ``overlap`` tokens.

    Returns (position, tokens of text[position:prev.end]) at the earliest word or
    sentence start that fits; with ``prefer_sentences``, moved forward to a sentence start
    when one lies in that tail, so overlaps begin at natural reading points. The tail's
    tokens are counted less ``base`` (see pack).
    """
    sentences = sorted(
        {trim(text, cut, prev.end)[0] for cut in sentence_cuts(text, prev.start, prev.end)}
        - {prev.end}
    ) if prefer_sentences else []
    words = {m.start() for m in WORD_START.finditer(text, prev.start + 1, prev.end)}
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
