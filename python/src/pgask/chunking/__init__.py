"""Split document text into token-bounded chunks for embedding, by one of four methods.

Methods (CHUNK_METHODS; chosen by name through ChunkerConfig and chunk_document):

- ``recursive`` (chunk_text): paragraphs, then sentences, then words, then raw characters -
  only as far as each piece needs to fit within ``max_tokens`` - packed greedily back into
  chunks as large as the limit allows.
- ``tokens`` (chunk_tokens): fixed windows of ``max_tokens`` tokens that ignore the text's
  structure; windows end at word boundaries, and only a word longer than a window is cut.
- ``markdown`` (chunk_markdown): one section per heading (a heading with no text of its own
  joins the next section); consecutive sections that fit in one chunk together share it, under
  the heading path they have in common, and only a longer section is cut within itself, so a
  page of short sections does not become chunks of a few dozen tokens (they lost nDCG@10 on the
  demo manual: docs/quality.md). Fenced code blocks and tables stay
  whole where they fit and are cut at line boundaries where they do not; paragraphs and lists
  split as in ``recursive``. Every chunk records its heading path (``Install > Debian >
  pgvector``) in ``metadata["heading_path"]`` and, with ``prepend_headings``, carries it as its
  ``context``: what gets embedded is ``embed_text``, the context, a newline, then the content.
- ``html`` (chunk_html): pgask.text.markdown_from_html, then ``markdown``. The offsets of
  html chunks index the converted text, not the HTML source: an offset into markup cannot point
  at anything readable, and the converted text is what `pgask ingest` stores for HTML files.

Guarantees of every method: ``content == text[start:end]``, trimmed and non-empty, so a
citation points at an exact span; the chunks cover all non-whitespace of the text, in order;
and ``count_tokens(chunk.embed_text) <= max_tokens``, context included, unless one character
alone exceeds the limit. ``token_count`` is that count. A context gets at most half the limit:
a longer heading path is cut to fit there (metadata keeps it whole).

The embedding model's limit (chunk_document's ``embed_limit=(counter, limit)``): the configured
tokenizer and max_tokens are the user's choice (500 cl100k tokens, say), the model's input size
is not (MiniLM sees 254 word pieces and silently ignores the rest). Both must hold, so the
chunker runs once, with one combined counter in a finer unit: ``max(count(s) * limit,
embed_count(s) * max_tokens)`` against the limit ``max_tokens * limit``, which it meets exactly
when ``count(s) <= max_tokens`` and ``embed_count(s) <= limit`` (integers, so no rounding).
Chunks are thus sized by whichever limit is stricter for the text at hand; the overlap is
``overlap * limit`` in that unit, so it never exceeds ``overlap`` configured tokens, and
``token_count`` is given in the configured tokenizer. The embedding counter may count a fixed
prefix as well, e.g. ``lambda s: count(f"{title}\n{s}")`` for a title embedded in front of
every chunk: chunkers take ``count("")`` as such a prefix's cost and leave it out when they add
up the counts of pieces, so chunks are still filled to the limit.

Modules: ``chunk`` (the Chunk value, argument checks), ``packer`` (pieces within a limit,
packed greedily, with overlap), one module per method (``recursive``, ``tokens``, ``markdown``,
``html``), and ``config`` (ChunkerConfig, chunk_document, chunk_rows for rag.chunk).

A pure room: the standard library, pgask.text and pgask.tokenization (which loads
tokenizers lazily); neither psycopg nor plpy.
"""

from pgask.chunking.chunk import MAX_TOKENS_LIMIT, Chunk
from pgask.chunking.config import CHUNK_METHODS, ChunkerConfig, chunk_document, chunk_rows
from pgask.chunking.html import chunk_html
from pgask.chunking.markdown import HEADING_SEPARATOR, chunk_markdown
from pgask.chunking.recursive import chunk_text
from pgask.chunking.tokens import chunk_tokens
from pgask.text import (
    TokenCounter,
    markdown_headings,
    simple_token_count,
    split_sentences,
    truncate_to_tokens,
)

__all__ = [
    "CHUNK_METHODS",
    "HEADING_SEPARATOR",
    "MAX_TOKENS_LIMIT",
    "Chunk",
    "ChunkerConfig",
    "TokenCounter",
    "chunk_document",
    "chunk_html",
    "chunk_markdown",
    "chunk_rows",
    "chunk_text",
    "chunk_tokens",
    "markdown_headings",
    "simple_token_count",
    "split_sentences",
    "truncate_to_tokens",
]
