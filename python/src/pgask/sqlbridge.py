"""What the PL/Python functions call: the only module that talks to `plpy`.

Functions that run SQL take the `plpy` module as their first argument (PL/Python injects it
into function bodies; it cannot be imported here). They convert between SQL values and the pure
modules. Arguments are validated by the plpgsql wrappers in sql/ before they get here: an error
raised in PL/Python carries a Python traceback, which users should never have to read.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from pgask import __version__
from pgask.answering.extractive import Passage, extractive_answer
from pgask.chunking import chunk_text
from pgask.embedders.local import count_tokens, get_local_embedder

# Room kept for the title, which is embedded in front of every chunk (at most this many tokens).
MAX_TITLE_TOKENS = 32


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; PL/Python hands it to vector_in."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def chunk(content, max_tokens, overlap):
    return [(c.ordinal, c.content, c.token_count, c.start, c.end)
            for c in chunk_text(content, max_tokens=max_tokens, overlap=overlap,
                                count_tokens=count_tokens)]


def embed(content):
    return vector_literal(get_local_embedder().embed_query(content))


def embed_many(contents):
    present = [c for c in contents if c is not None]
    vectors = iter(get_local_embedder().embed(present))
    return [None if c is None else vector_literal(next(vectors)) for c in contents]


def _title_prefix(title: str | None) -> str:
    words = (title or "").split()
    prefix = " ".join(words)
    while words and count_tokens(prefix) > MAX_TITLE_TOKENS:
        words.pop()
        prefix = " ".join(words)
    return prefix


def chunk_and_embed(content, title):
    """Chunks sized to the model's input, each embedded with the document title in front.

    The title gives every chunk its context ("CREATE INDEX" for a paragraph about columns);
    the chunk limit leaves room for it, so no chunk is truncated by the model.
    """
    embedder = get_local_embedder()
    prefix = _title_prefix(title)
    budget = embedder.max_input_tokens - (count_tokens(prefix) + 1 if prefix else 0)
    chunks = chunk_text(content, max_tokens=budget, count_tokens=count_tokens)
    vectors = embedder.embed([f"{prefix}\n{c.content}" if prefix else c.content for c in chunks])
    return [(c.ordinal, c.content, c.token_count, c.start, c.end, vector_literal(v))
            for c, v in zip(chunks, vectors, strict=True)]


_SEARCH = ("SELECT s.chunk_id, s.document_id, s.title, s.source, s.content, s.score,"
           " c.ordinal, c.char_start FROM rag.search($1, $2) s"
           " JOIN rag.chunks c ON c.id = s.chunk_id ORDER BY s.score DESC")
_plans: dict[str, object] = {}


def answer(plpy, question, k):
    """rag.answer: retrieve k chunks, answer extractively, return the result as JSON text."""
    if "search" not in _plans:
        _plans["search"] = plpy.prepare(_SEARCH, ["text", "integer"])
    rows = plpy.execute(_plans["search"], [question, k])
    passages = [Passage(r["chunk_id"], r["document_id"], r["title"], r["source"], r["content"],
                        r["char_start"], r["ordinal"], r["score"]) for r in rows]
    embedder = get_local_embedder()
    result = extractive_answer(embedder.embed_query(question), passages, embedder.embed)
    return json.dumps({
        "question": question,
        "answer": result.text,
        "mode": result.mode,
        "citations": [asdict(c) for c in result.citations],
        "model": embedder.name,
        "best_similarity": result.best_similarity,
        "retrieved": [{"chunk_id": p.chunk_id, "score": r["score"]}
                      for p, r in zip(passages, rows, strict=True)],
        "version": __version__,
    })
