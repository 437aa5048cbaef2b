"""rag.search's options: per-call values over the pipeline's search_options over defaults."""

from __future__ import annotations

from collections import namedtuple

MODES = ("hybrid", "vector", "keyword")
ON_EMBEDDER_ERROR = ("degrade", "error")


# The options and their defaults. SearchOptions is a named tuple, not a dataclass: importing
# dataclasses (inspect, ast, dis) costs a backend about 20 ms of its first search (issue 31).
_DEFAULTS = {
    # HNSW candidate list size (pgvector's hnsw.ef_search) for this call.
    "ef_search": 100,
    # Rows iterative index scans may visit to fill k after filters (hnsw.max_scan_tuples).
    "max_scan_tuples": 20000,
    # BM25: term frequency saturation and length normalisation. Not Lucene's 1.2 and 0.75:
    # with z-score fusion, 0.9 and 0.4 scored best over our three evaluation sets together
    # (docs/quality.md).
    "bm25_k1": 0.9,
    "bm25_b": 0.4,
    # How hybrid combines the lists: "zscore", the sum of weight * standardised score, which
    # keeps how far ahead a top hit is; or "rrf", reciprocal rank fusion, score = sum of
    # weight / (rrf_k + rank), which keeps only places. z-score won overall on pgdocs, the
    # runbooks and SciFact (docs/quality.md).
    "fusion": "zscore",
    "rrf_k": 60,
    "vector_weight": 1.0,
    "keyword_weight": 1.0,
    # Depth of each list before fusion, reranking and MMR, as a multiple of k.
    "candidates_factor": 4,
    # A rag.rerankers name: second stage over the best rerank_depth fused candidates (the
    # rest follow in first-stage order): rerankers read every passage, so depth is cost.
    "rerank": None,
    "rerank_depth": 50,
    # Maximal marginal relevance: 1 = relevance only; lower values trade relevance for
    # diversity. None = off.
    "mmr_lambda": None,
    # Drop a chunk whose embedding has at least this cosine similarity with a better one.
    "dedupe_threshold": None,
    # A query embedding that cannot be had (the embedder down, slow, failing, no key; see
    # pgask.retrieval.query_embedding): hybrid search goes on by keyword alone and says so
    # ("degrade"), or fails with SQLSTATE 38000 ("error"). Vector search always fails.
    "on_embedder_error": "degrade",
}


class SearchOptions(namedtuple("SearchOptions", _DEFAULTS, defaults=_DEFAULTS.values())):
    """rag.search's options in force for one call."""

    __slots__ = ()

    @classmethod
    def resolve(cls, *layers: dict | None) -> SearchOptions:
        """Defaults, then each layer's keys (later layers win); raises ValueError naming the
        option that is wrong."""
        options = cls()
        known = cls._fields
        for layer in layers:
            if layer is None:
                continue
            if not isinstance(layer, dict):
                raise ValueError(f"options must be a JSON object, got {layer!r}")
            for key, value in layer.items():
                if key not in known:
                    raise ValueError(f"unknown option {key!r}; known: {', '.join(known)}")
                options = options._replace(**{key: _checked(key, value)})
        return options


def _number(key: str, value, low: float, high: float, integer: bool = False):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 53:
        # float() of a 400-digit JSON number overflows: it is out of range anyway.
        raise ValueError(f"option {key} must be between {low} and {high}, got a number with "
                         f"{len(str(abs(value)))} digits")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"option {key} must be {kind} between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"option {key} must be between {low} and {high}, got {value!r}")
    return int(value) if integer else float(value)


def _checked(key: str, value):
    if key == "fusion":
        if value not in ("rrf", "zscore"):
            raise ValueError(f"option fusion must be 'rrf' or 'zscore', got {value!r}")
        return value
    if key == "on_embedder_error":
        if value not in ON_EMBEDDER_ERROR:
            raise ValueError(f"option on_embedder_error must be one of "
                             f"{', '.join(ON_EMBEDDER_ERROR)}, got {value!r}")
        return value
    if key in ("rerank",):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"option rerank must name a reranker (rag.create_reranker), got "
                             f"{value!r}")
        return value
    if key in ("mmr_lambda", "dedupe_threshold") and value is None:
        return None
    bounds = {
        "ef_search": (1, 1000, True), "max_scan_tuples": (1, 10_000_000, True),
        "bm25_k1": (0, 10, False), "bm25_b": (0, 1, False), "rrf_k": (1, 10_000, True),
        "vector_weight": (0, 100, False), "keyword_weight": (0, 100, False),
        "candidates_factor": (1, 100, True), "rerank_depth": (1, 1000, True),
        "mmr_lambda": (0, 1, False), "dedupe_threshold": (0, 1, False),
    }
    low, high, integer = bounds[key]
    return _number(key, value, low, high, integer)
