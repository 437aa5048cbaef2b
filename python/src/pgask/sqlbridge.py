"""What the PL/Python functions call: the only module that talks to `plpy`.

Functions that run SQL take the `plpy` module as their first argument (PL/Python injects it
into function bodies; it cannot be imported here). They convert between SQL values and the pure
modules. Arguments are validated by the plpgsql wrappers in sql/ before they get here: an error
raised in PL/Python carries a Python traceback, which users should never have to read.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict

from pgask import __version__
from pgask.answering.extractive import Passage, extractive_answer
from pgask.embedders import vector_literal
from pgask.embedders.local import get_local_embedder


def embed(content):
    return vector_literal(get_local_embedder().embed_query(content))


def embed_many(contents):
    present = [c for c in contents if c is not None]
    vectors = iter(get_local_embedder().embed(present))
    return [None if c is None else vector_literal(next(vectors)) for c in contents]


def chunker_error(config_json):
    """None if a pipeline's chunker configuration is valid, else the reason."""
    from pgask.chunking import ChunkerConfig

    try:
        ChunkerConfig.from_dict(json.loads(config_json))
    except ValueError as exc:
        return str(exc)
    return None


_query_vectors: OrderedDict[tuple[object, str], str] = OrderedDict()
QUERY_CACHE_SIZE = 256


def embed_with(plpy, content, embedder):
    """(vector, None) or (None, error) for rag.embed(content, embedder); repeated texts
    (questions asked again) come from a bounded per-backend cache."""
    from pgask.embedders.errors import EmbedderError
    from pgask.queue import load_embedder

    try:
        provider = load_embedder(plpy, embedder)
        key = (provider.spec, content)
        if key in _query_vectors:
            _query_vectors.move_to_end(key)
            return _query_vectors[key], None
        vector = vector_literal(provider.embed([content])[0])
    except EmbedderError as exc:
        return None, str(exc)
    _query_vectors[key] = vector
    if len(_query_vectors) > QUERY_CACHE_SIZE:
        _query_vectors.popitem(last=False)
    return vector, None


_plans: dict[str, object] = {}


def _search_plan(plpy, pipeline: str):
    """rag.search joined to the pipeline's chunks for their offsets, prepared once."""
    if pipeline not in _plans:
        chunks = plpy.quote_ident(f"{pipeline}_chunks")
        _plans[pipeline] = plpy.prepare(
            "SELECT s.chunk_id, s.document_id, s.title, s.source, s.content,"
            " coalesce(s.vector_score, 0) AS similarity, s.score,"
            f" c.ordinal, c.char_start FROM rag.search($1, $2, pipeline => $3) s"
            f" JOIN rag.{chunks} c"
            " ON c.id = s.chunk_id ORDER BY s.rank", ["text", "integer", "text"])
    return _plans[pipeline]


def answer(plpy, question, k, pipeline):
    """rag.answer: retrieve k chunks, answer extractively, return the result as JSON text."""
    rows = plpy.execute(_search_plan(plpy, pipeline), [question, k, pipeline])
    # The answerer's "is anything on topic" gate is calibrated on cosine similarity, which
    # hybrid search reports per chunk (a chunk found by keyword alone counts as 0 there).
    passages = [Passage(r["chunk_id"], r["document_id"], r["title"], r["source"], r["content"],
                        r["char_start"], r["ordinal"], r["similarity"]) for r in rows]
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
