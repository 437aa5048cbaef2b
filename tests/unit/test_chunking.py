"""Tests for pgask.chunking: limits, exact offsets, coverage, overlap and validation, for the
recursive, tokens, markdown and html methods; ChunkerConfig and chunk_document."""

from __future__ import annotations

import random
import time

import pytest

from pgask.chunking import (
    CHUNK_METHODS,
    Chunk,
    ChunkerConfig,
    chunk_document,
    chunk_html,
    chunk_markdown,
    chunk_rows,
    chunk_text,
    chunk_tokens,
    simple_token_count,
    split_sentences,
    truncate_to_tokens,
)
from pgask.loaders import markdown_from_html
from pgask.tokenization import get_counter

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
        assert c.token_count == count(c.embed_text)
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


# --- the other methods: tokens, markdown, html ----------------------------------

NESTED_LISTS = """# Shopping

- fruit
  - apples
  - pears
    - conference pears from the orchard
- vegetables
  1. leeks
  2. kale, curly or flat
- bread
"""

LONG_FENCE = (
    "# Setup\n\nRun this script once:\n\n```bash\n"
    + "\n".join(f"echo step {i} && make target-{i}" for i in range(80))
    + "\n```\n\nDone.\n"
)

TABLE = "## Types\n\nThe columns:\n\n| name | type | notes |\n|---|---|---|\n" + "\n".join(
    f"| column_{i} | integer | {prose(6, seed=i, sentence_every=None)} |" for i in range(60)
) + "\n\nAfter the table.\n"

STRUCTURED = {
    "headings": MARKDOWN,
    "nested-lists": NESTED_LISTS,
    "long-fence": LONG_FENCE,
    "table": TABLE,
    "code": CODE,
    "cjk": CJK,
    "long-paragraph": TEXTS["long-paragraph"],
    "crlf": MARKDOWN.replace("\n", "\r\n") + "\r\n```\r\ncode\r\n```\r\n",
}

METHODS = {"tokens": chunk_tokens, "recursive": chunk_text, "markdown": chunk_markdown}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("text_name", STRUCTURED)
@pytest.mark.parametrize("counter_name", ["default", "word-piece-ish"])
@pytest.mark.parametrize("max_tokens", [20, 200])
def test_every_method_respects_limit_offsets_and_coverage(
    method, text_name, counter_name, max_tokens
):
    text, count = STRUCTURED[text_name], COUNTERS[counter_name]
    chunks = METHODS[method](text, max_tokens=max_tokens, count_tokens=count)
    assert chunks
    assert_valid_chunks(text, chunks, max_tokens, count)


@pytest.mark.parametrize("method", [*METHODS, "html"])
@pytest.mark.parametrize("text", ["", "  \n\n\t "])
def test_every_method_gives_no_chunks_for_empty_input(method, text):
    chunker = chunk_html if method == "html" else METHODS[method]
    assert chunker(text) == []


@pytest.mark.parametrize("method", ["tokens", "markdown"])
def test_overlap_holds_for_the_other_methods(method):
    text = MARKDOWN
    chunks = METHODS[method](text, max_tokens=40, overlap=10)
    assert_valid_chunks(text, chunks, 40, simple_token_count, overlapping=True)
    assert any(nxt.start < prev.end for prev, nxt in zip(chunks, chunks[1:], strict=False))


def test_tokens_windows_ignore_structure_and_are_filled():
    text = "a b c\n\nd e f\n\n# g h\n\ni j"
    assert [c.content for c in chunk_tokens(text, max_tokens=4)] == [
        "a b c\n\nd", "e f\n\n# g", "h\n\ni j"
    ]
    long = prose(3000, seed=5)
    chunks = chunk_tokens(long, max_tokens=50)
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        next_word = long[following.start :].split()[0]
        assert simple_token_count(f"{chunk.content} {next_word}") > 50, "window not filled"


def test_tokens_overlap_starts_at_a_word_not_a_sentence():
    text = "Alpha beta gamma delta epsilon zeta. Eta theta. Iota kappa lambda mu nu xi."
    first, second = chunk_tokens(text, max_tokens=12, overlap=4)[:2]
    assert first.content.endswith("Iota kappa")
    # The longest tail within 4 tokens; the recursive method would move on to "Iota".
    assert second.content.startswith("theta. Iota kappa")


DOC = """Preamble paragraph.

# Install

Intro to install.

## Debian

### pgvector

Build pgvector from source.

```sh
# not a heading: a shell comment
make install
```

## Ubuntu

Use the PGDG repository.

# Usage
Setext Section
--------------

Query it.
"""


def test_markdown_records_heading_paths_and_embeds_them():
    chunks = chunk_markdown(DOC, max_tokens=200)
    assert [(c.metadata.get("heading_path"), c.content.split("\n")[0]) for c in chunks] == [
        (None, "Preamble paragraph."),
        ("Install", "# Install"),
        ("Install > Debian > pgvector", "## Debian"),  # a bare heading joins the next section
        ("Install > Ubuntu", "## Ubuntu"),
        ("Usage > Setext Section", "# Usage"),
    ]
    assert_valid_chunks(DOC, chunks, 200, simple_token_count)
    pgvector = chunks[2]
    assert pgvector.context == "Install > Debian > pgvector"
    assert pgvector.embed_text == f"{pgvector.context}\n{pgvector.content}"
    assert pgvector.content.endswith("make install\n```")  # the fence stays whole
    assert chunks[0].context == "" and chunks[0].embed_text == chunks[0].content


def test_markdown_without_prepended_headings_keeps_them_in_metadata():
    chunks = chunk_markdown(DOC, max_tokens=200, prepend_headings=False)
    assert all(c.context == "" and c.embed_text == c.content for c in chunks)
    assert chunks[2].metadata == {"heading_path": "Install > Debian > pgvector"}
    assert chunks[2].token_count == simple_token_count(chunks[2].content)


def test_markdown_never_mixes_two_sections_in_one_chunk():
    text = "# A\n\nalpha text.\n\n# B\n\nbeta text."
    assert [c.content for c in chunk_markdown(text, max_tokens=500)] == [
        "# A\n\nalpha text.", "# B\n\nbeta text."
    ]


def test_markdown_keeps_a_fence_whole_where_it_fits():
    fence = "```python\ndef f(x):\n    return x * 2  # doubled\n```"
    text = f"# Code\n\n{prose(30, seed=9)}\n\n{fence}\n\n{prose(30, seed=10)}"
    chunks = chunk_markdown(text, max_tokens=45)
    assert_valid_chunks(text, chunks, 45, simple_token_count)
    assert any(fence in c.content for c in chunks)


def line_aligned(text: str, chunk: Chunk) -> bool:
    starts_line = text[: chunk.start].rstrip(" ").endswith("\n")
    return starts_line and text[chunk.end : chunk.end + 1] in ("\n", "")


@pytest.mark.parametrize(("text", "block"), [(LONG_FENCE, "```bash"), (TABLE, "| name")])
def test_markdown_splits_long_fences_and_tables_at_line_boundaries(text, block):
    chunks = chunk_markdown(text, max_tokens=60)
    assert_valid_chunks(text, chunks, 60, simple_token_count)
    begin, end = text.index(block), text.index("\n\n", text.index(block))
    inside = [c for c in chunks if begin <= c.start and c.end <= end]
    assert len(inside) > 2
    assert all(line_aligned(text, c) for c in inside)


def test_markdown_cuts_a_long_heading_path_to_half_the_limit():
    title = " ".join(f"word{i}" for i in range(40))
    text = f"# {title}\n\n{prose(200, seed=11)}"
    chunks = chunk_markdown(text, max_tokens=30)
    assert_valid_chunks(text, chunks, 30, simple_token_count)
    assert all(c.metadata["heading_path"] == title for c in chunks)
    assert all(simple_token_count(c.context) <= 15 and title.startswith(c.context)
               for c in chunks)


def test_markdown_context_holds_with_a_non_additive_counter():
    # len() counts the joining newline too: the context's cost must be measured, not assumed.
    chunks = chunk_markdown(DOC, max_tokens=60, count_tokens=len)
    assert_valid_chunks(DOC, chunks, 60, len)


HTML = """<html><head><title>Guide</title></head><body>
<h1>Install</h1><p>Intro paragraph.</p>
<h2>Debian</h2>
<ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul>
<pre>""" + "\n".join(f"step {i}: make target-{i}" for i in range(40)) + """</pre>
<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
</body></html>"""


@pytest.mark.parametrize("max_tokens", [25, 500])
def test_html_chunks_index_the_converted_text(max_tokens):
    converted = markdown_from_html(HTML)
    chunks = chunk_html(HTML, max_tokens=max_tokens)
    assert_valid_chunks(converted, chunks, max_tokens, simple_token_count)
    assert chunks[0].content.startswith("# Install")
    assert {c.metadata["heading_path"] for c in chunks} == {"Install", "Install > Debian"}


def test_truncate_to_tokens_keeps_leading_words():
    assert truncate_to_tokens("a  b c d", 2, simple_token_count) == "a b"
    assert truncate_to_tokens("a b", 5, simple_token_count) == "a b"
    assert truncate_to_tokens("abc", 0, simple_token_count) == ""


def test_chunk_stays_compatible():
    chunk = Chunk(0, "text", 0, 4, 1)
    assert (chunk.metadata, chunk.context, chunk.embed_text) == ({}, "", "text")
    assert hash(chunk) == hash(Chunk(0, "text", 0, 4, 1, {"heading_path": "A"}))


def test_markdown_rejects_a_non_bool_prepend_headings():
    with pytest.raises(ValueError, match="prepend_headings must be a bool, got 'yes'"):
        chunk_markdown("x", prepend_headings="yes")  # type: ignore[arg-type]


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
