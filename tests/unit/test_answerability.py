"""The answerability signals and the logistic regression behind extractive "I don't know"."""

import numpy as np
import pytest

from pgask.answering import answerability
from pgask.answering.answerability import (
    FEATURES,
    Scorer,
    expected_type,
    features,
    fit,
    has_type,
    key_terms,
)


@pytest.mark.parametrize(("question", "kind"), [
    ("How many people live in Warsaw?", "number"),
    ("How much did the bridge cost?", "number"),
    ("What percentage of voters agreed?", "number"),
    ("When was the university founded?", "date"),
    ("In what year did the Normans arrive?", "date"),
    ("Which century saw the decline?", "date"),
    ("Who designed the cathedral?", "name"),
    ("Whose army won the battle?", "name"),
    ("Where is the Rhine's source?", "place"),
    ("Which country borders Poland to the south?", "place"),
    ("Why did the empire fall?", None),
    ("What is a B-tree index?", None),
])
def test_expected_type_from_the_wording(question, kind):
    assert expected_type(question) == kind


def test_key_terms_are_names_and_numbers_not_the_opening_word():
    assert key_terms("What did Rollo sign in 911 with Charles?") == {"rollo", "911", "charle"}
    assert key_terms("Which index is fastest?") == set()


def test_has_type_wants_something_the_question_does_not_name():
    assert has_type("date", "The abbey was built in 1066.", "When was the abbey built?")
    assert has_type("date", "It was built in the late eleventh century.", "When was it built?")
    assert not has_type("date", "The abbey was built by monks.", "When was the abbey built?")
    # the year is the question's own, not an answer
    assert not has_type("date", "In 1066 the abbey grew.", "When after 1066 did it grow?")
    assert has_type("number", "About three thousand people came.", "How many came?")
    assert has_type("name", "The abbey was designed by William Wren.", "Who designed it?")
    assert not has_type("name", "The abbey was designed by monks.", "Who designed it?")
    assert not has_type(None, "Anything at all 1066.", "Why?")


def _features(question, sentences, similarity, keyword=None, passages=(0.6,)):
    similarity = np.array(similarity, dtype=np.float32)
    keyword = similarity if keyword is None else np.array(keyword, dtype=np.float32)
    values = features(question, sentences, similarity, keyword, similarity, list(passages))
    return dict(zip(FEATURES, values, strict=True))


def test_features_see_a_name_the_sentences_lack():
    sentences = ["The Normans were led by Rollo in 911.", "Normandy lies in northern France."]
    asked = _features("Who led the Normans in 911?", sentences, [0.8, 0.4])
    swapped = _features("Who led the Vikings in 1066?", sentences, [0.8, 0.4])
    assert asked["key_terms_in_best"] == 1.0 and asked["missing_terms"] == 0.0
    assert swapped["key_terms_in_best"] == 0.0 and swapped["missing_terms"] == pytest.approx(2 / 3)
    assert asked["best_coverage"] == 1.0 and swapped["best_coverage"] == pytest.approx(1 / 3)
    assert asked["type_known"] == 1.0 and asked["type_in_best"] == 1.0  # "Rollo"


def test_features_margin_agreement_and_scores():
    f = _features("What is the capital?", ["The capital is Paris, a city.", "Other words here."],
                  [0.7, 0.5], keyword=[0.0, 1.0], passages=(0.3, 0.55))
    assert f["best_similarity"] == pytest.approx(0.7)
    assert f["top_passage"] == pytest.approx(0.55)
    assert f["margin"] == pytest.approx(0.2)
    assert f["agreement"] == 0.0  # similarity and keywords point at different sentences
    assert f["type_known"] == 0.0 and f["type_in_best"] == 0.0


def test_fit_separates_a_separable_signal_and_is_reproducible():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=400)
    noise = rng.normal(size=400)
    x = np.column_stack([signal, noise])
    y = (signal > 0).astype(float)
    scorer = fit(x, y)
    assert scorer == fit(x, y)
    assert scorer.weights[0] > 1.0 and abs(scorer.weights[1]) < 0.5
    assert scorer.probability(np.array([2.0, 0.0])) > 0.9
    assert scorer.probability(np.array([-2.0, 0.0])) < 0.1


def test_scorer_is_a_standardised_logistic_regression():
    scorer = Scorer(mean=(1.0, 0.0), scale=(2.0, 1.0), weights=(1.0, -1.0), bias=0.5)
    # z = ((3 - 1) / 2, (1 - 0) / 1) = (1, 1): 0.5 + 1 - 1 = 0.5
    assert scorer.probability(np.array([3.0, 1.0])) == pytest.approx(1 / (1 + np.exp(-0.5)))


def test_the_shipped_scorer_has_one_weight_per_feature():
    from pgask.answering.extractive import DEFAULT_MIN_ANSWERABLE, SCORER

    assert len(SCORER.weights) == len(SCORER.mean) == len(SCORER.scale) == len(FEATURES)
    assert 0.0 < DEFAULT_MIN_ANSWERABLE < 1.0
    assert answerability.FEATURES[0] == "best_similarity"


def test_features_see_a_negation_the_best_sentence_lacks_and_broken_word_pairs():
    sentences = ["Rollo led the Norse raiders into Normandy.", "Normandy is in France."]
    plain = _features("Who led the Norse raiders?", sentences, [0.8, 0.4])
    negated = _features("Who never led the Norse raiders?", sentences, [0.8, 0.4])
    assert plain["negation_mismatch"] == 0.0 and negated["negation_mismatch"] == 1.0
    assert plain["pairs_in_best"] == 1.0  # "led norse", "norse raider"
    swapped = _features("Who led the Danish raiders?", sentences, [0.8, 0.4])
    assert swapped["pairs_in_best"] == 0.0
