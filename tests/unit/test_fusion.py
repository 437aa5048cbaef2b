"""Fusion and diversity over ranked lists (pure functions: no database, no model)."""

import numpy as np
import pytest

from pgask.retrieval.fusion import (
    drop_near_duplicates,
    maximal_marginal_relevance,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from pgask.retrieval.options import SearchOptions


def test_rrf_sums_weighted_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]], [1.0, 2.0], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 2 / 62)
    assert fused[2] == pytest.approx(1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 2 / 61)
    assert [i for i, _ in reciprocal_rank_fusion([[1, 2, 3], [3, 1]], [1.0, 2.0])] == [3, 1, 2]


def test_rrf_zero_weight_ignores_a_list():
    assert [i for i, _ in reciprocal_rank_fusion([[1, 2], [2, 9]], [1.0, 0.0])] == [1, 2]


def test_zscore_fusion_keeps_margins_and_floors_missing_ids():
    vector = [(1, 0.9), (2, 0.5), (3, 0.4)]  # 1 far ahead
    keyword = [(3, 10.0), (2, 9.0)]  # close race; 1 missing: gets the list's lowest z
    fused = zscore_fusion([vector, keyword], [1.0, 1.0])
    z_vector = (np.array([0.9, 0.5, 0.4]) - 0.6) / np.std([0.9, 0.5, 0.4])
    assert dict(fused)[1] == pytest.approx(z_vector[0] + (-1.0))
    assert dict(fused)[3] == pytest.approx(z_vector[2] + 1.0)
    assert [i for i, _ in fused] == [1, 3, 2]  # 1 leads by far in one list, 3 barely in one
    assert zscore_fusion([[], []], [1.0, 1.0]) == []


def test_defaults_are_the_ones_measured_best_overall():
    # Chosen on pgdocs, the runbooks and SciFact train together (docs/quality.md): change
    # them only with new figures there.
    options = SearchOptions()
    assert (options.fusion, options.bm25_k1, options.bm25_b) == ("zscore", 0.9, 0.4)
    assert (options.vector_weight, options.keyword_weight) == (1.0, 1.0)


def test_near_duplicates_are_dropped_best_first():
    vectors = np.array([[1, 0], [0.999, 0.01], [0, 1]], dtype=np.float32)
    assert drop_near_duplicates([10, 11, 12], vectors, 0.95) == [10, 12]


def test_mmr_trades_relevance_for_diversity():
    vectors = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    relevance = [1.0, 0.95, 0.5]
    assert maximal_marginal_relevance([1, 2, 3], relevance, vectors, 1.0, 2) == [1, 2]
    assert maximal_marginal_relevance([1, 2, 3], relevance, vectors, 0.3, 2) == [1, 3]
