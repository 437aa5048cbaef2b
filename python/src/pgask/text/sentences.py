"""Spans of plain text: paragraphs, lines, sentences and words, as (start, end) offsets.

Every span is trimmed and non-empty, so ``text[start:end]`` is what a citation shows.
Pure: the standard library only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NEWLINE = re.compile(r"\n")
_WORD = re.compile(r"\S+")
WORD_START = re.compile(r"(?<=\s)\S")
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


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences in ``text``, trimmed and non-empty."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return list(sentence_spans(text, 0, len(text)))


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spans_between(
    text: str, start: int, end: int, cuts: Iterable[int]
) -> Iterator[tuple[int, int]]:
    prev = start
    for cut in itertools.chain(cuts, (end,)):
        a, b = trim(text, prev, cut)
        if a < b:
            yield a, b
        prev = cut


def paragraph_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cuts = (m.end() for m in _PARAGRAPH_BREAK.finditer(text, start, end))
    return spans_between(text, start, end, cuts)


def line_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cuts = (m.end() for m in _NEWLINE.finditer(text, start, end))
    return spans_between(text, start, end, cuts)


def sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    return spans_between(text, start, end, sentence_cuts(text, start, end))


def word_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    return (m.span() for m in _WORD.finditer(text, start, end))


def sentence_cuts(text: str, start: int, end: int) -> Iterator[int]:
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
