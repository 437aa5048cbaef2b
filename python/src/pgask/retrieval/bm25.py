"""Top-k pruning for BM25 (MaxScore, with term-set clauses and a falling threshold), so keyword
search does not score every chunk that holds some common query term.

A term t contributes at most idf(t) * (k1 + 1) to a chunk's score (tf / (tf + k1 * norm)
stays below 1). Once some chunks are known to score at least `threshold` (the depth-th best
so far), a chunk whose terms are all among the "non-essential" ones (the longest run of
smallest upper bounds whose sum stays below the threshold) cannot reach the top: only chunks
holding an essential term are candidates. Scores are unchanged; only chunks that provably
rank below the depth-th are never read, so the top list equals exhaustive scoring's.
(Turtle and Flood, "Query evaluation: strategies and optimizations", 1995.)

Two refinements: a chunk must hold a whole *set* of terms whose bounds reach the threshold
(candidate_clauses: an OR of ANDs a GIN index answers, far fewer chunks than any one term),
and the threshold is found by lowering a guess from above (top_chunks), since one taken from
the rarest term's chunks alone was often far below the final one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# A scorer: the top `depth` (id, exact score) of the chunks holding every term of some clause,
# best first.
Scorer = Callable[[list[list[str]]], list[tuple[int, float]]]


def upper_bound(idf: float, k1: float) -> float:
    """The most one occurrence-saturated term can add to a chunk's BM25 score."""
    return idf * (k1 + 1)


def within_rounding(threshold: float) -> float:
    """The threshold less a margin, so that float rounding never makes a sum of bounds, or a
    score computed in SQL, compare the wrong way with it: a tie counts as reaching it."""
    return threshold * (1 - 1e-9)


def essential_terms(idfs: dict[str, float], k1: float, threshold: float) -> list[str]:
    """The terms a chunk must hold to score `threshold` or more, rarest first. With a
    threshold of 0 (nothing known yet) every term is essential."""
    by_bound = sorted(idfs, key=lambda term: (upper_bound(idfs[term], k1), term))
    reachable = 0.0
    cut = 0
    for term in by_bound:
        reachable += upper_bound(idfs[term], k1)
        if reachable >= within_rounding(threshold):
            break
        cut += 1
    return list(reversed(by_bound[cut:]))


def candidate_clauses(idfs: dict[str, float], k1: float, threshold: float,
                      limit: int = 256, narrow: float = 1e-4) -> list[list[str]]:
    """Term sets such that a chunk scoring `threshold` or more holds every term of one of them,
    each rarest first: the minimal sets whose upper bounds add up to the threshold (a chunk
    holding only "replication" may fall short where one holding "replication" and "slot" may
    not). A chunk holding none of them cannot reach the threshold, so matching `clause1 OR
    clause2 ...` (each clause an AND) finds every chunk that can, and far fewer than any one
    of their terms would; a GIN index answers each AND by skipping through its rarest term's
    postings. A set is cut short once its terms together are expected in fewer than `narrow`
    of the chunks (a term's share is about exp(-idf)): longer sets would find hardly fewer
    chunks, and with many mid-frequency terms there are thousands of them. Past `limit` sets,
    sets are cut sooner (a set of one term each is essential_terms)."""
    by_bound = sorted(idfs, key=lambda term: (-upper_bound(idfs[term], k1), term))
    bounds = [upper_bound(idfs[term], k1) for term in by_bound]
    shares = [math.exp(-idfs[term]) for term in by_bound]
    need = within_rounding(threshold)
    after = [sum(bounds[i:]) for i in range(len(bounds) + 1)]

    def cover(cut: float) -> list[list[str]] | None:
        clauses: list[list[str]] = []

        def extend(chosen: list[int], total: float, share: float, start: int) -> bool:
            for i in range(start, len(bounds)):
                if total + after[i] < need:
                    return True  # the remaining terms together cannot reach it either
                if total + bounds[i] >= need or share * shares[i] <= cut:
                    # Reaching it: minimal, since every chosen bound is at least bounds[i]
                    # and without i the set fell short. Cut: every set that extends this one
                    # and reaches the threshold holds these terms.
                    clauses.append([by_bound[j] for j in (*chosen, i)])
                    if len(clauses) > limit:
                        return False
                elif not extend([*chosen, i], total + bounds[i], share * shares[i], i + 1):
                    return False
            return True

        return clauses if extend([], 0.0, 1.0, 0) else None

    for cut in (narrow * 10 ** i for i in range(4)):
        clauses = cover(cut)
        if clauses is not None:
            return clauses
    return [[term] for term in essential_terms(idfs, k1, threshold)]


def top_chunks(idfs: dict[str, float], k1: float, depth: int, scored: Scorer,
               start: float = 1.5, step: float = 0.5) -> list[tuple[int, float]]:
    """The `depth` best chunks, exactly as scoring every chunk holding a query term would rank
    them, found by lowering a guessed threshold: each round scores only the chunks that can
    reach the guess (candidate_clauses). A round whose depth-th score reaches its guess is
    exact (every chunk that could beat it was scored). Otherwise the scores seen so far give a
    threshold some depth chunks do reach, and the guess falls to it or by `step`, whichever
    is higher; a round at a threshold that depth chunks reach is exact too. A high first guess
    (`start` times the best single term's bound, at most all bounds together) costs one
    cheap round; one too low scores thousands of chunks that a higher one would have
    skipped."""
    bounds = [upper_bound(idf, k1) for idf in idfs.values()]
    guess = min(start * max(bounds), sum(bounds))  # above the sum no chunk could reach it
    seen: dict[int, float] = {}
    clauses = candidate_clauses(idfs, k1, guess)
    hits = scored(clauses)
    while True:
        if len(hits) >= depth and hits[depth - 1][1] >= within_rounding(guess):
            return hits[:depth]
        seen.update(hits)
        best = sorted(seen.values(), reverse=True)
        reached = best[depth - 1] if len(best) >= depth else 0.0
        if guess <= reached or guess <= 0.0:
            return hits  # the guess was a threshold depth chunks reach, or 0: exact
        lower = guess * step
        # Below the smallest bound every term is a clause of its own: go straight to the
        # threshold reached (0 when not even depth chunks were seen: everything is scored).
        guess = max(reached, lower) if lower >= min(bounds) else reached
        following = candidate_clauses(idfs, k1, guess)
        if following != clauses:  # cut to the same clauses, the last round's hits stand
            clauses = following
            hits = scored(clauses)
