"""Metrics against hand-computed values, and the BEIR and SQuAD readers."""

import json
import math

import pytest
from samples import DOCS, QRELS, QUERIES, SQUAD, write_beir

from pgask_measure.evaluation import (
    documents_in_order,
    evaluate_run,
    exact_match,
    f1_score,
    load_beir,
    load_squad,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

# Ranked: d3 (not relevant), d1 (rel 1), d2 (rel 2), d5 (not judged); d4 (rel 1) missed.
RANKED = ["d3", "d1", "d2", "d5"]
JUDGED = {"d1": 1, "d2": 2, "d4": 1}


def test_ndcg_by_hand():
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)  # 1.63093
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # 3.13093
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(0.520909, abs=1e-6)
    assert ndcg_at_k(RANKED, JUDGED, 1) == 0.0
    assert ndcg_at_k(["d2", "d1", "d4"], JUDGED, 10) == pytest.approx(1.0)


def test_recall_and_mrr_by_hand():
    assert recall_at_k(RANKED, JUDGED, 10) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKED, JUDGED, 10) == 0.5
    assert mrr_at_k(RANKED, JUDGED, 1) == 0.0
    assert recall_at_k(RANKED, {"d9": 0}, 10) == 0.0  # nothing relevant judged


def test_run_is_averaged_over_judged_queries():
    run = {"q1": RANKED, "q2": ["d7"], "q3": ["x"]}
    qrels = {"q1": JUDGED, "q2": {"d7": 1}}
    metrics = evaluate_run(run, qrels)
    assert metrics["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["recall@100"] == pytest.approx((2 / 3 + 1.0) / 2)
    with pytest.raises(ValueError, match="no query in the run has relevance judgements"):
        evaluate_run({"q3": ["x"]}, qrels)


def test_documents_are_ranked_by_their_best_chunk():
    assert documents_in_order(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_load_beir(tmp_path):
    write_beir(tmp_path / "set", DOCS, QUERIES, QRELS, split="train")
    dataset = load_beir(tmp_path / "set")  # the only split there is
    assert dataset.name == "set"
    assert dataset.corpus["idx"] == DOCS["idx"]
    assert dataset.qrels == {"1": {"vac": 1}, "2": {"cat": 1}}
    with pytest.raises(ValueError, match=r"has no qrels/test.tsv \(qrels\)"):
        load_beir(tmp_path / "set", "test")
    with pytest.raises(ValueError, match="does not exist"):
        load_beir(tmp_path / "nowhere")


def test_squad_reader_and_scores(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    squad = load_squad(path)
    assert len(squad.contexts) == 2 and len(squad.questions) == 3
    assert squad.questions[0].answers == ("Normandy",)
    assert squad.questions[1].answers == ()  # "c", the unanswerable one
    assert exact_match("the Normandy!", ["Normandy"]) == 1.0
    # "the" is dropped: precision 1/3, recall 1.
    assert f1_score("Rollo led the Vikings", ["Rollo"]) == pytest.approx(0.5)
    assert f1_score("nothing shared", ["Rollo"]) == 0.0
