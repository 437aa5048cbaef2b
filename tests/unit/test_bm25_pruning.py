"""MaxScore pruning's pure part: which query terms a chunk must hold to reach a threshold."""

from pgask.retrieval.bm25 import essential_terms, probe_order, upper_bound


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


def test_probe_order_is_rarest_first():
    assert probe_order({"the": 0.1, "fox": 3.0, "lazy": 2.0}) == ["fox", "lazy", "the"]
