"""Combining and diversifying ranked lists: reciprocal rank fusion, MMR, near-duplicate removal.
Pure functions over ids, scores and vectors; no database, no model."""

from __future__ import annotations

import math
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:  # imported by the functions that compare vectors (MMR, near-duplicates)
    import numpy as np


def reciprocal_rank_fusion(lists: Sequence[Sequence[int]], weights: Sequence[float],
                           k: int = 60) -> list[tuple[int, float]]:
    """(id, score) best first, score = sum over lists of weight / (k + rank), rank from 1.
    RRF needs no score calibration between BM25 and cosine, which live on unrelated scales;
    ties keep the order of first appearance (earlier lists first)."""
    scores: dict[int, float] = {}
    for ids, weight in zip(lists, weights, strict=True):
        if weight == 0:
            continue
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def zscore_fusion(lists: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]
                  ) -> list[tuple[int, float]]:
    """(id, score) best first, score = sum over lists of weight * z, where z standardises a
    list's scores (mean 0, standard deviation 1 over that list). An id missing from a list
    gets that list's lowest z: it ranked below everything the list returned. Unlike RRF it
    keeps how far ahead a top hit is, not only its place."""
    standardised = []
    for hits in lists:
        values = [float(score) for _, score in hits]
        # Plain Python, not numpy: this runs in every default search, and importing numpy
        # is most of a new connection's first search.
        mean = math.fsum(values) / len(values) if values else 0.0
        spread = (math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
                  if len(values) > 1 else 0.0)
        z = [(v - mean) / spread if spread > 0 else 0.0 for v in values]
        standardised.append(({item: v for (item, _), v in zip(hits, z, strict=True)},
                             min(z) if z else 0.0))
    ids = list(dict.fromkeys(item for hits in lists for item, _ in hits))
    scores = {item: sum(weight * by_id.get(item, floor)
                        for (by_id, floor), weight in zip(standardised, weights, strict=True))
              for item in ids}
    return sorted(scores.items(), key=lambda pair: -pair[1])


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def drop_near_duplicates(ids: Sequence[int], vectors: np.ndarray, threshold: float
                         ) -> list[int]:
    """ids (best first) without any whose vector has cosine >= threshold with a kept one."""
    import numpy as np

    unit = _unit_rows(np.asarray(vectors, dtype=np.float32))
    kept: list[int] = []
    for i in range(len(ids)):
        if kept and float(np.max(unit[kept] @ unit[i])) >= threshold:
            continue
        kept.append(i)
    return [ids[i] for i in kept]


def maximal_marginal_relevance(ids: Sequence[int], relevance: Sequence[float],
                               vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """k ids picked greedily by lam * relevance - (1 - lam) * max similarity to those picked.
    relevance becomes the candidate's place in the relevance order, scaled from 1 (best) down
    towards 0, so it is on the cosine's scale whatever produced it (RRF, z-scores, BM25, a
    reranker): min-max scaling gave the last candidate exactly 0, so with z-scores a clear
    outlier list left MMR unable to pick the one different passage."""
    import numpy as np

    if not ids:
        return []
    order = np.argsort(-np.asarray(relevance, dtype=np.float64), kind="stable")
    rel = np.empty(len(ids), dtype=np.float64)
    rel[order] = 1.0 - np.arange(len(ids)) / len(ids)
    unit = _unit_rows(np.asarray(vectors, dtype=np.float32))
    similarity = unit @ unit.T
    chosen: list[int] = []
    remaining = list(range(len(ids)))
    while remaining and len(chosen) < k:
        if chosen:
            penalty = similarity[np.ix_(remaining, chosen)].max(axis=1)
        else:
            penalty = np.zeros(len(remaining))
        scores = lam * rel[remaining] - (1 - lam) * penalty
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return [ids[i] for i in chosen]
