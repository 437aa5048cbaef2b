"""Tests for pgask.chunking's tokens, markdown and html methods."""

from __future__ import annotations

import pytest
from chunk_samples import (
    CJK,
    CODE,
    COUNTERS,
    DOC,
    HTML,
    MARKDOWN,
    TEXTS,
    assert_valid_chunks,
    prose,
)

from pgask.chunking import (
    Chunk,
    chunk_html,
    chunk_markdown,
    chunk_text,
    chunk_tokens,
    simple_token_count,
)
from pgask.loaders import markdown_from_html

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


def test_markdown_records_heading_paths_and_embeds_them():
    chunks = chunk_markdown(DOC, max_tokens=36)
    assert [(c.metadata.get("heading_path"), c.content.split("\n")[0]) for c in chunks] == [
        (None, "Preamble paragraph."),  # with "# Install": together they fit
        ("Install > Debian > pgvector", "## Debian"),  # a bare heading joins the next section
        (None, "## Ubuntu"),  # with "# Usage": no heading is over both
    ]
    assert_valid_chunks(DOC, chunks, 36, simple_token_count)
    pgvector = chunks[1]
    assert pgvector.context == "Install > Debian > pgvector"
    assert pgvector.embed_text == f"{pgvector.context}\n{pgvector.content}"
    assert pgvector.content.endswith("make install\n```")  # the fence stays whole
    assert chunks[0].context == "" and chunks[0].embed_text == chunks[0].content


def test_markdown_without_prepended_headings_keeps_them_in_metadata():
    chunks = chunk_markdown(DOC, max_tokens=30, prepend_headings=False)
    assert all(c.context == "" and c.embed_text == c.content for c in chunks)
    pgvector = next(c for c in chunks if "make install" in c.content)
    assert pgvector.metadata == {"heading_path": "Install > Debian > pgvector"}
    assert pgvector.token_count == simple_token_count(pgvector.content)


def test_markdown_sections_too_long_to_share_keep_their_own_paths():
    text = (f"# Install\n\n{prose(40, seed=21)}\n\n## Debian\n\n{prose(40, seed=22)}"
            f"\n\n# Usage\n\n{prose(40, seed=23)}")
    chunks = chunk_markdown(text, max_tokens=60)
    assert [(c.metadata["heading_path"], c.context, c.content.split("\n")[0])
            for c in chunks] == [("Install", "Install", "# Install"),
                                 ("Install > Debian", "Install > Debian", "## Debian"),
                                 ("Usage", "Usage", "# Usage")]
    assert_valid_chunks(text, chunks, 60, simple_token_count)


@pytest.mark.parametrize(("text", "path"), [
    ("# A\n\n## B\n\nbeta text.\n\n## C\n\ngamma text.", "A"),
    ("# A\n\nalpha text.\n\n# B\n\nbeta text.", None),
])
def test_markdown_short_sections_share_a_chunk_under_the_path_they_share(text, path):
    """Measured on the demo manual: one chunk per short section (a reference page's options)
    gave chunks of a few dozen tokens and a lower nDCG@10 (docs/quality.md)."""
    (chunk,) = chunk_markdown(text, max_tokens=500)
    assert chunk.content == text
    assert chunk.metadata.get("heading_path") == path
    assert chunk.context == (path or "")


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


@pytest.mark.parametrize("max_tokens", [25, 500])
def test_html_chunks_index_the_converted_text(max_tokens):
    converted = markdown_from_html(HTML)
    chunks = chunk_html(HTML, max_tokens=max_tokens)
    assert_valid_chunks(converted, chunks, max_tokens, simple_token_count)
    assert chunks[0].content.startswith("# Install")
    # Small enough to share a chunk, the two sections share the path they have in common.
    paths = {"Install", "Install > Debian"} if max_tokens == 25 else {"Install"}
    assert {c.metadata["heading_path"] for c in chunks} == paths


def test_chunk_stays_compatible():
    chunk = Chunk(0, "text", 0, 4, 1)
    assert (chunk.metadata, chunk.context, chunk.embed_text) == ({}, "", "text")
    assert hash(chunk) == hash(Chunk(0, "text", 0, 4, 1, {"heading_path": "A"}))


def test_markdown_rejects_a_non_bool_prepend_headings():
    with pytest.raises(ValueError, match="prepend_headings must be a bool, got 'yes'"):
        chunk_markdown("x", prepend_headings="yes")  # type: ignore[arg-type]
