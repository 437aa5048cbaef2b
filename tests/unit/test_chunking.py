"""Tests for pgask.chunking's common guarantees and the recursive method: limits, exact
offsets, coverage, overlap and validation."""

from __future__ import annotations

import random
import time

import pytest
from chunk_samples import (
    CJK,
    CODE,
    COUNTERS,
    MARKDOWN,
    TEXTS,
    assert_valid_chunks,
    prose,
    word_piece_ish,
)

from pgask.chunking import (
    chunk_text,
    simple_token_count,
)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_empty_or_whitespace_gives_no_chunks(text):
    assert chunk_text(text) == []


@pytest.mark.parametrize("counter_name", COUNTERS)
@pytest.mark.parametrize("text_name", TEXTS)
@pytest.mark.parametrize("max_tokens", [20, 200])
def test_chunks_respect_limit_offsets_and_coverage(text_name, counter_name, max_tokens):
    text, count = TEXTS[text_name], COUNTERS[counter_name]
    chunks = chunk_text(text, max_tokens=max_tokens, count_tokens=count)
    assert chunks
    assert_valid_chunks(text, chunks, max_tokens, count)


def test_default_counter_is_used_when_none_given():
    chunks = chunk_text(MARKDOWN, max_tokens=50)
    assert_valid_chunks(MARKDOWN, chunks, 50, simple_token_count)


def test_small_text_is_a_single_trimmed_chunk():
    text = "\n  Hello world.  \n"
    [chunk] = chunk_text(text)
    assert (chunk.content, chunk.start, chunk.end) == ("Hello world.", 3, 15)
    assert chunk.token_count == 3


def test_pieces_are_packed_as_large_as_the_limit_allows():
    chunks = chunk_text("a b c d e f g", max_tokens=3)
    assert [c.content for c in chunks] == ["a b c", "d e f", "g"]


def test_paragraphs_that_fit_together_share_a_chunk():
    text = "First paragraph here.\n\nSecond one."
    assert [c.content for c in chunk_text(text, max_tokens=20)] == [text]


def test_oversized_paragraph_breaks_at_sentence_boundaries():
    text = "One two three. Four five six. Seven eight nine."
    chunks = chunk_text(text, max_tokens=8)
    assert [c.content for c in chunks] == ["One two three. Four five six.", "Seven eight nine."]


def test_code_is_kept_verbatim():
    [whole] = chunk_text(CODE, max_tokens=500)
    assert whole.content == CODE.strip()
    chunks = chunk_text(CODE, max_tokens=30)
    # Indentation inside a chunk is part of the verbatim slice.
    assert any("\n    id bigserial PRIMARY KEY," in c.content for c in chunks)
    assert_valid_chunks(CODE, chunks, 30, simple_token_count)


def test_cjk_without_spaces_is_hard_split():
    chunks = chunk_text(CJK, max_tokens=100)
    # One ideograph is one token, and there is no space or punctuation to split at.
    assert [c.token_count for c in chunks[:-1]] == [100] * (len(chunks) - 1)
    assert "".join(c.content for c in chunks) == CJK


def test_long_single_word_is_hard_split_with_custom_counter():
    blob = "x" * 5000
    chunks = chunk_text(blob, max_tokens=300, count_tokens=len)
    assert [len(c.content) for c in chunks] == [300] * 16 + [200]


def test_twenty_thousand_word_paragraph_is_fast():
    text = TEXTS["long-paragraph"]
    started = time.perf_counter()
    chunks = chunk_text(text, max_tokens=500, count_tokens=word_piece_ish)
    assert time.perf_counter() - started < 10
    assert len(chunks) > 10
    assert_valid_chunks(text, chunks, 500, word_piece_ish)


@pytest.mark.slow
def test_ten_megabyte_text():
    paragraphs, size, seed = [], 0, 0
    while size < 10_000_000:
        paragraph = prose(random.Random(seed).randint(20, 300), seed=seed)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
        seed += 1
    text = "\n\n".join(paragraphs)
    started = time.perf_counter()
    chunks = chunk_text(text, max_tokens=500)
    assert time.perf_counter() - started < 60  # ~1 s on a laptop; generous for slow CI
    assert_valid_chunks(text, chunks, 500, simple_token_count)


@pytest.mark.parametrize(
    ("counter_name", "max_tokens", "overlap"),
    [("default", 60, 15), ("word-piece-ish", 60, 15), ("chars", 300, 60)],
)
def test_overlap_repeats_the_end_of_the_previous_chunk(counter_name, max_tokens, overlap):
    text, count = MARKDOWN, COUNTERS[counter_name]
    chunks = chunk_text(text, max_tokens=max_tokens, overlap=overlap, count_tokens=count)
    assert len(chunks) > 3
    assert_valid_chunks(text, chunks, max_tokens, count, overlapping=True)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start < prev.end, "consecutive chunks should overlap"
        assert text[nxt.start - 1].isspace(), "overlap should start at a word boundary"
        assert count(text[nxt.start : prev.end]) <= overlap


def test_overlap_prefers_a_sentence_start():
    text = "Alpha beta gamma delta epsilon zeta. Eta theta. Iota kappa lambda mu nu xi."
    first, second, *_ = chunk_text(text, max_tokens=12, overlap=5)
    assert first.content == "Alpha beta gamma delta epsilon zeta. Eta theta."
    assert second.content.startswith("Eta theta.")


def test_overlap_never_pushes_a_chunk_over_the_limit():
    text = prose(3000, seed=7)
    for max_tokens, overlap in [(10, 9), (50, 49), (500, 100)]:
        chunks = chunk_text(text, max_tokens=max_tokens, overlap=overlap)
        assert_valid_chunks(text, chunks, max_tokens, simple_token_count, overlapping=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, r"max_tokens must be between 1 and 8192, got 0"),
        ({"max_tokens": 8193}, r"max_tokens must be between 1 and 8192, got 8193"),
        ({"max_tokens": "500"}, r"max_tokens must be between 1 and 8192, got '500'"),
        ({"overlap": 600}, r"overlap must be >= 0 and < max_tokens \(500\), got 600"),
        ({"overlap": -1}, r"overlap must be >= 0 and < max_tokens \(500\), got -1"),
        ({"max_tokens": 10, "overlap": 10}, r"< max_tokens \(10\), got 10"),
        ({"count_tokens": 3}, r"count_tokens must be callable or None, got int"),
    ],
)
def test_invalid_arguments_are_rejected_with_clear_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        chunk_text("some text", **kwargs)


def test_text_must_be_a_string():
    with pytest.raises(ValueError, match=r"text must be a str, got NoneType"):
        chunk_text(None)  # type: ignore[arg-type]


def test_limits_are_accepted_at_both_ends():
    assert chunk_text("one two", max_tokens=1) != []
    assert len(chunk_text(prose(100), max_tokens=8192, overlap=8191)) == 1
