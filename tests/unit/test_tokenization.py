"""Tests for pgask.tokenization: counters by name, offline tiktoken, caching, bad names."""

from __future__ import annotations

import pytest

from pgask import tokenization
from pgask.embedders import local
from pgask.tokenization import TOKENIZERS, count_tokens, get_counter


@pytest.mark.parametrize(
    ("name", "ids"),
    [("cl100k_base", [15339, 1917]), ("o200k_base", [24912, 2375])],  # OpenAI's published ids
)
def test_tiktoken_encodings_match_openai(name, ids):
    assert tokenization._tiktoken_encoding(name).encode("hello world") == ids
    assert count_tokens("hello world", name) == 2


def test_every_name_gives_a_counter():
    text = "PostgreSQL stores vectors; 数据库索引 speeds up queries."
    for name in TOKENIZERS:
        counter = get_counter(name)
        assert counter("") == 0
        assert 5 < counter(text) < 40


def test_minilm_is_the_embedding_models_own_counter_without_truncation():
    assert get_counter("minilm") is local.count_tokens
    # The shipped tokenizer.json would stop at 128; the counter must see everything.
    assert count_tokens("word " * 300) == 300


def test_special_tokens_are_counted_as_plain_text():
    # A document mentioning <|endoftext|> must neither raise nor become one special token.
    assert count_tokens("<|endoftext|>", "cl100k_base") == 7
    assert count_tokens("<|endoftext|>", "o200k_base") > 1


def test_encodings_are_built_once_per_process():
    first = tokenization._tiktoken_encoding("cl100k_base")
    assert tokenization._tiktoken_encoding("cl100k_base") is first


def test_no_download_is_ever_attempted(monkeypatch, tmp_path):
    import tiktoken.load

    def no_network(*args, **kwargs):
        raise AssertionError("tiktoken tried to fetch a file")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokenization._tiktoken_encoding.cache_clear()
    try:
        assert count_tokens("hello world", "o200k_base") == 2
    finally:
        tokenization._tiktoken_encoding.cache_clear()


def test_ranks_with_an_unexpected_hash_are_refused(monkeypatch):
    spec = dict(tokenization._TIKTOKEN_SPECS["cl100k_base"], sha256="0" * 64)
    monkeypatch.setitem(tokenization._TIKTOKEN_SPECS, "cl100k_base", spec)
    tokenization._tiktoken_encoding.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="cl100k_base ranks have sha256 .* expected 0000"):
            get_counter("cl100k_base")
    finally:
        tokenization._tiktoken_encoding.cache_clear()


@pytest.mark.parametrize("name", ["gpt2", "", "MiniLM", None])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ValueError, match=r"tokenizer must be one of minilm, cl100k_base, "
                                         r"o200k_base, got "):
        get_counter(name)
