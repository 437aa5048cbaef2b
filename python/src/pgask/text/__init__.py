"""Text tools shared by loading, chunking, answering, prompts and reranking.

``sentences`` (paragraph, line, sentence and word spans), ``tokens`` (a tokenizer-free count,
cutting to a token budget), ``markdown`` (headings, fences, tables, sections) and ``html``
(HTML as Markdown-ish text). A pure room: the standard library only, no psycopg, no plpy; it
imports nothing else of pgask, so chunking and loaders can both depend on it.
"""

from pgask.text.html import html_to_text, markdown_from_html
from pgask.text.markdown import markdown_headings
from pgask.text.sentences import split_sentences
from pgask.text.tokens import TokenCounter, simple_token_count, truncate_to_tokens

__all__ = [
    "TokenCounter",
    "html_to_text",
    "markdown_from_html",
    "markdown_headings",
    "simple_token_count",
    "split_sentences",
    "truncate_to_tokens",
]
