"""What the small PL/Python functions of sql/030_embedding.sql and sql/020_chunking.sql call.

(Larger jobs have modules of their own: queue, retrieval.search, answering.pipeline.)
Functions that run SQL take the `plpy` module as their first argument (PL/Python injects it
into function bodies; it cannot be imported here). They convert between SQL values and the pure
modules. Arguments are validated by the plpgsql wrappers in sql/ before they get here: an error
raised in PL/Python carries a Python traceback, which users should never have to read.
"""

from __future__ import annotations

from collections import OrderedDict

from pgask import jsonlite
from pgask.embedders import vector_literal
from pgask.embedders.service import backend_embedder


def embed(content):
    return backend_embedder().query_literal(content)


def embed_many(contents):
    present = [c for c in contents if c is not None]
    vectors = iter(backend_embedder().embed(present))
    return [None if c is None else vector_literal(next(vectors)) for c in contents]


def chunker_error(config_json):
    """None if a pipeline's chunker configuration is valid, else the reason."""
    from pgask.chunking import ChunkerConfig

    try:
        ChunkerConfig.from_dict(jsonlite.loads(config_json))
    except ValueError as exc:
        return str(exc)
    return None


_query_vectors: OrderedDict[tuple[object, str], str] = OrderedDict()
QUERY_CACHE_SIZE = 256


def embed_with(plpy, content, embedder):
    """(vector, None) or (None, error) for rag.embed(content, embedder); repeated texts
    (questions asked again) come from a bounded per-backend cache."""
    from pgask.embedders.registry import load_embedder
    from pgask.providers import EmbedderError
    from pgask.providers.errors import KeyAccessError

    try:
        provider = load_embedder(plpy, embedder)
        key = (provider.spec, content)
        if key in _query_vectors:
            _query_vectors.move_to_end(key)
            return _query_vectors[key], None
        if provider.spec.provider == "local":
            # The model's own query cache: the extractive answerer asks it for the same text.
            vector = vector_literal(backend_embedder().embed_query(content))
        else:
            vector = vector_literal(provider.embed([content])[0])
    except KeyAccessError as exc:
        return None, KeyAccessError.PREFIX + str(exc)
    except EmbedderError as exc:
        return None, str(exc)
    _query_vectors[key] = vector
    if len(_query_vectors) > QUERY_CACHE_SIZE:
        _query_vectors.popitem(last=False)
    return vector, None
