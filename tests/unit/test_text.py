"""Tests for pgask.text: sentence spans, token truncation, Markdown headings."""

import pytest

from pgask.text import (
    markdown_headings,
    simple_token_count,
    split_sentences,
    truncate_to_tokens,
)


def test_split_sentences_wants_a_string():
    with pytest.raises(ValueError, match=r"text must be a str, got bytes"):
        split_sentences(b"bytes")  # type: ignore[arg-type]


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


def test_truncate_to_tokens_keeps_leading_words():
    assert truncate_to_tokens("a  b c d", 2, simple_token_count) == "a b"
    assert truncate_to_tokens("a b", 5, simple_token_count) == "a b"
    assert truncate_to_tokens("abc", 0, simple_token_count) == ""


def test_simple_token_count_counts_words_punctuation_and_cjk_characters():
    assert simple_token_count("Hello, world!") == 4
    assert simple_token_count("索引很快") == 4
    assert simple_token_count("") == 0


def test_markdown_headings_skips_fenced_code_and_reads_setext():
    text = "Title\n=====\n\n```\n# not a heading\n```\n\n## Part *one* ##\n- item\n---\n"
    assert markdown_headings(text) == [(1, "Title"), (2, "Part *one*")]
