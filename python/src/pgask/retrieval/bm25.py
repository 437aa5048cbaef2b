"""Top-k pruning for BM25 (MaxScore), so keyword search does not score every chunk that holds
some common query term.

A term t contributes at most idf(t) * (k1 + 1) to a chunk's score (tf / (tf + k1 * norm)
stays below 1). Once some chunks are known to score at least `threshold` (the depth-th best
so far), a chunk whose terms are all among the "non-essential" ones (the longest run of
smallest upper bounds whose sum stays below the threshold) cannot reach the top: only chunks
holding an essential term are candidates. Scores are unchanged; only chunks that provably
rank below the depth-th are never read, so the top list equals exhaustive scoring's.
(Turtle and Flood, "Query evaluation: strategies and optimizations", 1995.)
"""

from __future__ import annotations


def upper_bound(idf: float, k1: float) -> float:
    """The most one occurrence-saturated term can add to a chunk's BM25 score."""
    return idf * (k1 + 1)


def essential_terms(idfs: dict[str, float], k1: float, threshold: float) -> list[str]:
    """The terms a chunk must hold to score `threshold` or more, rarest first. With a
    threshold of 0 (nothing known yet) every term is essential."""
    by_bound = sorted(idfs, key=lambda term: (upper_bound(idfs[term], k1), term))
    # The margin keeps a term essential when float rounding could make a sum of bounds and
    # a score computed in SQL compare the wrong way.
    reachable = 0.0
    cut = 0
    for term in by_bound:
        reachable += upper_bound(idfs[term], k1)
        if reachable >= threshold * (1 - 1e-9):
            break
        cut += 1
    return list(reversed(by_bound[cut:]))


def probe_order(idfs: dict[str, float]) -> list[str]:
    """Terms rarest first (highest idf): the cheapest postings that still set a threshold."""
    return sorted(idfs, key=lambda term: (-idfs[term], term))
