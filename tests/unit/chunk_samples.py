"""Texts, token counters and the checks every chunking test applies: exact offsets, limits,
order and coverage of all non-whitespace text."""

from __future__ import annotations

import random

from pgask.chunking import Chunk, simple_token_count

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

HTML = """<html><head><title>Guide</title></head><body>
<h1>Install</h1><p>Intro paragraph.</p>
<h2>Debian</h2>
<ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul>
<pre>""" + "\n".join(f"step {i}: make target-{i}" for i in range(40)) + """</pre>
<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
</body></html>"""
