"""MaxScore pruning's pure part: which query terms a chunk must hold to reach a threshold."""

import math
from collections import Counter
from itertools import combinations

import numpy as np

from pgask.retrieval.bm25 import candidate_clauses, essential_terms, top_chunks, upper_bound


def test_without_a_threshold_every_term_is_essential():
    idfs = {"fox": 3.0, "the": 0.1, "lazy": 2.0}
    assert sorted(essential_terms(idfs, 1.2, 0.0)) == ["fox", "lazy", "the"]


def test_common_terms_whose_bounds_cannot_reach_the_threshold_are_dropped():
    idfs = {"replication": 6.0, "slot": 5.0, "use": 0.2, "data": 0.3}
    k1 = 1.2
    # "use" and "data" together add at most (0.2 + 0.3) * 2.2 = 1.1 < 2: a chunk holding
    # only them cannot reach a threshold of 2.
    assert essential_terms(idfs, k1, 2.0) == ["replication", "slot"]
    # At exactly their reachable sum, they stay essential (a tie could enter the top).
    assert "data" in essential_terms(idfs, k1, upper_bound(0.2, k1) + upper_bound(0.3, k1))


def test_the_rarest_term_is_never_dropped_while_the_threshold_is_reachable():
    idfs = {"a": 1.0, "b": 1.0}
    assert essential_terms(idfs, 0.0, 2.0) == ["b"]  # ties broken by name, b after a
    assert essential_terms(idfs, 0.0, 1.5) == ["b"]
    assert essential_terms(idfs, 0.0, 0.5) == ["b", "a"]


class Corpus:
    """BM25 over Zipf-distributed words in memory, scoring as rag.search's statement does:
    the top `depth` of the chunks holding every term of some clause; counts what it scored."""

    def __init__(self, rng, chunks=800, k1=0.9, b=0.4):
        words = np.array([f"w{i:03d}" for i in range(300)])
        p = 1.0 / np.arange(1, len(words) + 1)
        self.docs = [Counter(rng.choice(words, size=int(rng.integers(5, 60)), p=p / p.sum()))
                     for _ in range(chunks)]
        self.avgdl = sum(sum(d.values()) for d in self.docs) / len(self.docs)
        self.k1, self.b, self.scored_chunks = k1, b, 0

    def idfs(self, query):
        n = len(self.docs)
        df = {t: sum(t in d for d in self.docs) for t in query}
        return {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items() if f}

    def score(self, doc, idfs):
        norm = 1 - self.b + self.b * sum(doc.values()) / self.avgdl
        return sum(idf * doc[t] * (self.k1 + 1) / (doc[t] + self.k1 * norm)
                   for t, idf in sorted(idfs.items()) if doc[t])

    def scorer(self, idfs, depth):
        def scored(clauses):
            held = [i for i, d in enumerate(self.docs)
                    if any(all(d[t] for t in clause) for clause in clauses)]
            self.scored_chunks += len(held)
            ranked = sorted((-self.score(self.docs[i], idfs), i) for i in held)[:depth]
            return [(i, -s) for s, i in ranked]
        return scored


def test_top_chunks_equal_exhaustive_scoring_and_score_fewer_chunks():
    rng = np.random.default_rng(5)
    corpus = Corpus(rng)
    exhaustive = pruned = 0
    for _ in range(60):
        query = list(dict.fromkeys(f"w{int(i):03d}" for i in rng.integers(
            0, 300, size=int(rng.integers(2, 9)))))
        idfs = corpus.idfs(query)
        if not idfs:
            continue
        depth = int(rng.choice([5, 20, 40]))
        corpus.scored_chunks = 0
        everything = corpus.scorer(idfs, depth)([[t] for t in idfs])
        exhaustive += corpus.scored_chunks
        corpus.scored_chunks = 0
        assert top_chunks(idfs, corpus.k1, depth, corpus.scorer(idfs, depth)) == everything
        pruned += corpus.scored_chunks
    # 0.67 of exhaustive scoring's chunks on this small corpus, rounds that fell short included.
    assert pruned < 0.8 * exhaustive, (pruned, exhaustive)


def test_candidate_clauses_are_the_minimal_term_sets_that_can_reach_the_threshold():
    idfs = {"replication": 6.0, "slot": 5.0, "lag": 3.0, "use": 0.2}
    k1 = 0.0  # bounds equal idfs
    clauses = candidate_clauses(idfs, k1, 8.0)
    assert clauses == [["replication", "slot"], ["replication", "lag"], ["slot", "lag"]]
    # Every set of terms reaches the threshold exactly when it holds one of the clauses.
    for size in range(1, len(idfs) + 1):
        for held in combinations(idfs, size):
            reaches = sum(idfs[t] for t in held) >= 8.0
            assert reaches == any(set(c) <= set(held) for c in clauses), held


def test_candidate_clauses_keep_a_set_that_ties_the_threshold():
    idfs = {"a": 1.0, "b": 2.0}
    assert candidate_clauses(idfs, 0.0, 3.0) == [["b", "a"]]
    assert candidate_clauses(idfs, 0.0, 3.0 + 1e-6) == []  # nothing can reach it


def test_candidate_clauses_without_a_threshold_are_single_terms():
    assert candidate_clauses({"fox": 3.0, "the": 0.1}, 1.2, 0.0) == [["fox"], ["the"]]


def test_past_the_limit_clauses_are_cut_to_their_rarest_terms():
    idfs = {f"t{i:02d}": 1.0 + i / 100 for i in range(12)}
    assert len(candidate_clauses(idfs, 0.0, 6.5, limit=1000)) > 100
    cut = candidate_clauses(idfs, 0.0, 6.5, limit=100)
    assert 0 < len(cut) <= 100
    # Still a cover: every term set that reaches the threshold holds one of the clauses.
    for size in range(1, 8):
        for held in combinations(idfs, size):
            if sum(idfs[t] for t in held) >= 6.5:
                assert any(set(c) <= set(held) for c in cut), held
    # At the last resort, single terms: essential_terms'.
    assert candidate_clauses(idfs, 0.0, 6.5, limit=1) == [
        [t] for t in essential_terms(idfs, 0.0, 6.5)]


def test_a_set_of_rare_terms_is_cut_before_it_reaches_the_threshold():
    # a and b together are expected in exp(-11) of the chunks: adding c would find hardly
    # fewer, so the clause stops at them; every chunk reaching 12 still holds both.
    idfs = {"a": 6.0, "b": 5.0, "c": 1.0}
    assert candidate_clauses(idfs, 0.0, 12.0) == [["a", "b"]]
    assert candidate_clauses(idfs, 0.0, 12.0, narrow=1e-12) == [["a", "b", "c"]]
