"""Tests for pgask.chunking.config: ChunkerConfig, chunk_document (the configured tokenizer, the
embedding model's limit) and chunk_rows, what rag.chunk returns."""

from __future__ import annotations

import pytest
from chunk_samples import (
    DOC,
    HTML,
    MARKDOWN,
    assert_covers_all_text,
    assert_valid_chunks,
    prose,
)

from pgask.chunking import (
    CHUNK_METHODS,
    ChunkerConfig,
    chunk_document,
    chunk_rows,
    simple_token_count,
)
from pgask.loaders import markdown_from_html
from pgask.tokenization import get_counter

# --- configuration and chunk_document -------------------------------------------


def test_chunker_config_defaults_and_round_trip():
    assert ChunkerConfig.from_dict(None) == ChunkerConfig.from_dict({}) == ChunkerConfig()
    assert ChunkerConfig().to_dict() == {
        "method": "recursive", "max_tokens": 500, "overlap": 0, "tokenizer": "minilm",
        "prepend_headings": True,
    }
    config = ChunkerConfig.from_dict({"method": "markdown", "max_tokens": 200, "overlap": 20,
                                      "tokenizer": "cl100k_base", "prepend_headings": False})
    assert ChunkerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "foo"},
         "chunker.method must be one of html, markdown, recursive, tokens, got 'foo'"),
        ({"max_tokens": 0}, "chunker.max_tokens must be an integer between 1 and 8192, got 0"),
        ({"max_tokens": "500"}, "chunker.max_tokens must be an integer between 1 and 8192, "
                                "got '500'"),
        ({"max_tokens": True}, "chunker.max_tokens must be an integer between 1 and 8192"),
        ({"max_tokens": 100, "overlap": 100},
         r"chunker.overlap must be an integer >= 0 and < max_tokens \(100\), got 100"),
        ({"tokenizer": "gpt2"},
         "chunker.tokenizer must be one of minilm, cl100k_base, o200k_base, got 'gpt2'"),
        ({"prepend_headings": "yes"}, "chunker.prepend_headings must be true or false, got 'yes'"),
        ({"size": 5}, "chunker.size is not a chunker setting; expected keys: method, max_tokens, "
                      "overlap, tokenizer, prepend_headings"),
    ],
)
def test_chunker_config_errors_name_the_key_and_what_was_expected(settings, message):
    with pytest.raises(ValueError, match=message):
        ChunkerConfig.from_dict(settings)


def test_chunker_config_must_be_a_dict():
    with pytest.raises(ValueError, match=r"chunker must be an object \(dict\), got list"):
        ChunkerConfig.from_dict(["markdown"])  # type: ignore[arg-type]


@pytest.mark.parametrize("method", CHUNK_METHODS)
@pytest.mark.parametrize("tokenizer", ["minilm", "cl100k_base"])
def test_chunk_document_uses_the_configured_tokenizer(method, tokenizer):
    text = HTML if method == "html" else DOC + MARKDOWN
    config = ChunkerConfig(method=method, max_tokens=40, tokenizer=tokenizer)
    chunks = chunk_document(text, config)
    source = markdown_from_html(text) if method == "html" else text
    assert_valid_chunks(source, chunks, 40, get_counter(tokenizer))


def test_chunk_document_keeps_chunks_within_the_embedding_models_limit():
    minilm, cl100k = get_counter("minilm"), get_counter("cl100k_base")
    # Digits and symbols cost MiniLM more word pieces than cl100k tokens: 500 cl100k tokens
    # would be silently cut by the model without the embedding limit.
    text = "\n\n".join(f"## Part {i}\n\n" + " ".join(f"v{j}.{j * 7}-rc{j}" for j in range(400))
                       for i in range(3))
    config = ChunkerConfig(method="markdown", max_tokens=500, tokenizer="cl100k_base")
    assert max(minilm(c.embed_text) for c in chunk_document(text, config)) > 254
    chunks = chunk_document(text, config, embed_limit=(minilm, 254))
    for c in chunks:
        assert minilm(c.embed_text) <= 254
        assert c.token_count == cl100k(c.embed_text) <= 500
    assert_covers_all_text(text, chunks)


def test_chunk_document_embedding_limit_can_count_a_title_prefix():
    minilm = get_counter("minilm")
    title = "CREATE INDEX reference page"

    def with_title(text: str) -> int:
        return minilm(f"{title}\n{text}")

    config = ChunkerConfig(method="recursive", max_tokens=8192)
    chunks = chunk_document(prose(2000, seed=3), config, embed_limit=(with_title, 254))
    assert all(with_title(c.embed_text) <= 254 for c in chunks)


@pytest.mark.parametrize("method", ["tokens", "recursive", "markdown"])
def test_a_counted_prefix_does_not_shrink_the_chunks(method):
    # Every count includes the same title; adding up piece counts must not count it per piece.
    title = "A fairly long title of a dozen words or so for this document"
    overhead = simple_token_count(title)

    def with_title(text: str) -> int:
        return simple_token_count(f"{title}\n{text}")

    text = prose(2000, seed=12, sentence_every=None)
    config = ChunkerConfig(method=method, max_tokens=8192)
    chunks = chunk_document(text, config, embed_limit=(with_title, 100))
    assert all(with_title(c.embed_text) <= 100 for c in chunks)
    assert len(chunks) == -(-2000 // (100 - overhead))  # every window filled to the limit
    assert_covers_all_text(text, chunks)


def test_an_embed_limit_with_no_room_left_is_refused():
    with pytest.raises(ValueError, match="embed_limit leaves no room for text: its counter "
                                         "gives 12 tokens for an empty text, limit 10"):
        chunk_document("text", ChunkerConfig(), embed_limit=(lambda s: 12 + len(s), 10))


@pytest.mark.parametrize("embed_limit", [(len,), (len, 0), ("len", 5), (len, 2.5)])
def test_chunk_document_rejects_a_bad_embed_limit(embed_limit):
    with pytest.raises(ValueError, match=r"embed_limit must be a \(counter, limit\) pair"):
        chunk_document("text", ChunkerConfig(), embed_limit=embed_limit)


def test_chunk_document_requires_a_config():
    with pytest.raises(ValueError, match="config must be a ChunkerConfig, got dict"):
        chunk_document("text", {"method": "tokens"})  # type: ignore[arg-type]


def test_chunk_rows_are_what_rag_chunk_returns():
    [row] = chunk_rows("# Title\n\nBody.", "markdown", 50, 0, "minilm")
    assert row == (0, "# Title\n\nBody.", 5, 0, 14, '{"heading_path": "Title"}',
                   "Title\n# Title\n\nBody.")
