"""Tests for pgask.chunking: limits, exact offsets, coverage, overlap and validation."""

from __future__ import annotations

import random
import time

import pytest

from pgask.chunking import Chunk, chunk_text, simple_token_count, split_sentences

WORDS = (
    "the index stores vectors so that a query can find the nearest chunks quickly "
    "while postgres keeps everything transactional and consistent for the reader"
).split()


def word_piece_ish(text: str) -> int:
    """A counter unlike the default: roughly one token per four characters of each word."""
    return sum((len(word) + 3) // 4 for word in text.split())


COUNTERS = {
    "default": simple_token_count,
    "chars": len,  # counts whitespace too, so piece counts are not additive
    "word-piece-ish": word_piece_ish,
}


def prose(n_words: int, seed: int = 0, sentence_every: int | None = 12) -> str:
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(n_words)]
    if sentence_every:
        for i in range(sentence_every - 1, n_words, sentence_every):
            words[i] += "."
    return " ".join(words)


MARKDOWN = "\n\n".join(
    [
        "# Indexing in pgask",
        prose(80, seed=1),
        "## Building the index",
        prose(150, seed=2),
        "- first item with some words\n- second item\n- third item that is longer than the rest",
        "## Querying\n\n" + prose(60, seed=3),
    ]
)

CODE = """Here is how to create the table:

```sql
CREATE TABLE chunks (
    id bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    content text NOT NULL,
    embedding vector(384)
);
CREATE INDEX ON chunks USING hnsw (embedding vector_cosine_ops);
```

```python
def embed(texts):
    return [model.encode(t) for t in texts]  # {"key": [1, 2, 3]}
```
"""

CJK = "数据库索引可以显著提高查询性能并减少扫描的数据量" * 200  # no spaces, no punctuation

TEXTS = {
    "markdown": MARKDOWN,
    "code": CODE,
    "cjk": CJK,
    "cjk-sentences": "索引提高查询性能。向量检索很快！" * 100,
    "base64-blob": "intro line\n\n" + "QUJDRA+/" * 700 + "\n\noutro line",
    "long-paragraph": prose(20_000, seed=4, sentence_every=None),
}


def assert_valid_chunks(
    text: str, chunks: list[Chunk], max_tokens: int, count, *, overlapping: bool = False
) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.content == text[c.start : c.end]
        assert c.content and c.content == c.content.strip()
        assert c.token_count == count(c.content)
        assert c.token_count <= max_tokens
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.start < nxt.start and prev.end < nxt.end
        if not overlapping:
            assert prev.end <= nxt.start
    assert_covers_all_text(text, chunks)


def assert_covers_all_text(text: str, chunks: list[Chunk]) -> None:
    gaps, covered_to = [], 0
    for c in chunks:
        gaps.append(text[covered_to : c.start])
        covered_to = max(covered_to, c.end)
    gaps.append(text[covered_to:])
    assert "".join(gaps).strip() == ""


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
    with pytest.raises(ValueError, match=r"text must be a str, got bytes"):
        split_sentences(b"bytes")  # type: ignore[arg-type]


def test_limits_are_accepted_at_both_ends():
    assert chunk_text("one two", max_tokens=1) != []
    assert len(chunk_text(prose(100), max_tokens=8192, overlap=8191)) == 1


def sentences(text: str) -> list[str]:
    spans = split_sentences(text)
    assert spans == sorted(spans)
    return [text[a:b] for a, b in spans]


def test_split_sentences_keeps_abbreviations_and_decimals_together():
    text = (
        "Use an index, e.g. a B-tree, for equality. That is i.e. the default. "
        "Fig. 3 shows that pi is 3.14 in practice! Is it fast? Yes, see Dr. Smith and J. Doe."
    )
    assert sentences(text) == [
        "Use an index, e.g. a B-tree, for equality.",
        "That is i.e. the default.",
        "Fig. 3 shows that pi is 3.14 in practice!",
        "Is it fast?",
        "Yes, see Dr. Smith and J. Doe.",
    ]


def test_split_sentences_breaks_on_newlines_and_trims():
    text = "  # Heading\n- item one\n\n  second paragraph.  Next sentence.\n"
    assert sentences(text) == ["# Heading", "- item one", "second paragraph.", "Next sentence."]


def test_split_sentences_handles_quotes_cjk_and_urls():
    assert sentences('He said "Stop." Then he left.') == ['He said "Stop."', "Then he left."]
    assert sentences("索引很快。查询也很快！对吗？") == ["索引很快。", "查询也很快！", "对吗？"]
    assert sentences("See example.com for v1.2 docs. Done.") == [
        "See example.com for v1.2 docs.",
        "Done.",
    ]


def test_split_sentences_of_blank_text_is_empty():
    assert split_sentences("") == []
    assert split_sentences(" \n\t") == []
