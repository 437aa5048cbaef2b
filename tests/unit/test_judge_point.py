"""The experiment of issue 32 that has the judge point at a sentence and code check it
(pgask_measure.judge_point): replies are parsed strictly, and a sentence pointed at supports a
claim only when it holds the claim's facts and words."""

import pytest

from pgask.answering import judge
from pgask.answering.grounding import check_grounding
from pgask_measure import judge_point
from pgask_measure.guard_replay import RecordingMismatch, replay

PASSAGE = ("Audit logs are kept for 400 days. After that they are deleted by a nightly job. "
           "Operators can export them to cold storage before then.")


@pytest.mark.parametrize(("reply", "expected"), [
    ("1: S1\n2: S2, S3\n3: NONE", [[1], [2, 3], []]),
    ("Sentences:\n2: s3 and s2\n1: **S1**.\n3: none", [[1], [2, 3], []]),
    ("1: S1\n3: 4", [[1], judge.MALFORMED, [4]]),
    ("1: S1\n1: S2\n2: S2\n1: S1\n3: NONE", [judge.MALFORMED, [2], []]),
    ("1: S1 because it says so\n2: YES\n3: S2", [judge.MALFORMED, judge.MALFORMED, [2]]),
    ("I'm sorry, but I cannot help with that.", [judge.MALFORMED] * 3),
    ("", [judge.MALFORMED] * 3),
])
def test_an_answer_is_read_only_from_its_own_line(reply, expected):
    assert judge_point.pointed(reply, 3) == expected


def request_for(answer, passages, question="How long are audit logs kept?"):
    grounding = check_grounding(answer, passages)
    items, known = judge.items_for(grounding.claims, len(passages))
    return grounding, items, known, judge_point.build_request(question, items, passages)


def test_the_prompt_numbers_the_sentences_of_the_passages_the_claims_rest_on():
    _, items, _, request = request_for(
        "Audit logs are kept for 400 days [2].", ["Unrelated text.", PASSAGE])
    user = request.messages[1]["content"]
    assert ("[2]\nS1. Audit logs are kept for 400 days.\nS2. After that they are deleted by "
            "a nightly job.\nS3. Operators can export them" in user)
    assert "Unrelated" not in user  # only the passages the claims rest on
    assert "1. (passage [2]) Audit logs are kept for 400 days." in user
    assert [(s.passage, s.position) for s in request.sentences] == [(2, 0), (2, 1), (2, 2)]


@pytest.mark.parametrize(("reply", "verdict"), [
    ("1: S1", "supported"),
    ("1: S1, S2", "supported"),  # two neighbours may state it together
    ("1: S2", judge_point.UNVERIFIED),  # the model points, the sentence does not hold the claim
    ("1: S3", judge_point.UNVERIFIED),
    ("1: NONE", judge.NOT_STATED),
    ("1: S1, S3", judge.MALFORMED),  # not neighbours
    ("1: S1, S2, S3", judge.MALFORMED),  # more than ATTRIBUTE_WINDOW sentences
    ("1: S4", judge.MALFORMED),  # no such sentence shown
    ("1: S0", judge.MALFORMED),
])
def test_a_sentence_pointed_at_supports_a_claim_only_if_it_holds_it(reply, verdict):
    _, _, _, request = request_for("Audit logs are kept for 400 days [1].", [PASSAGE])
    assert judge_point.parse(reply, request) == [verdict]


def test_a_name_the_pointed_sentence_lacks_is_unverified():
    """Most of the claim's words are in S1, but the name "Operators" is only in S3: the words
    guard, reading the whole passage, lets the claim through; the judge's check of S1 does
    not."""
    grounding, items, _, request = request_for(
        "Audit logs are kept for 400 days for Operators [1].", [PASSAGE])
    assert grounding.grounded
    assert judge_point.parse("1: S1", request) == [judge_point.UNVERIFIED]
    # S3 holds the name but not the words
    assert judge_point.parse("1: S3", request) == [judge_point.UNVERIFIED]


def test_sentences_of_two_passages_are_not_neighbours():
    second = "The nightly job runs at 02:00."
    _, items, _, request = request_for(
        "Audit logs are kept for 400 days [1]. The nightly job runs at 02:00 [2].",
        [PASSAGE, second])
    assert [s.passage for s in request.sentences] == [1, 1, 1, 2]
    assert judge_point.parse("1: S1\n2: S4", request) == ["supported", "supported"]
    assert judge_point.parse("1: S3, S4\n2: S4", request) == [judge.MALFORMED, "supported"]


def test_unverified_claims_withhold_the_answer_through_the_products_decide():
    answer = "Audit logs are kept for 400 days [1]. They are deleted by a nightly job [1]."
    grounding, items, known, request = request_for(answer, [PASSAGE])
    assert grounding.grounded
    assert request.max_tokens == 2 * judge_point.TOKENS_PER_CLAIM + judge_point.TOKENS_MARGIN
    for reply, grounded in (("1: S1\n2: S2", True), ("1: S1\n2: NONE", False),
                            ("1: S1\n2: S3", False), ("1: S1", False)):
        decided, _ = judge.decide(grounding, items, known, judge_point.for_decide(
            judge_point.parse(reply, request)))
        assert decided.grounded is grounded


def test_a_recording_replays_only_with_the_protocol_it_was_made_with():
    line = {"id": "q1", "question": "How long are audit logs kept?", "gold": ["400 days"],
            "reply": "Audit logs are kept for 400 days [1].", "passages": [PASSAGE]}
    entry = {"id": "q1", "claims": [["Audit logs are kept for 400 days.", [1]]],
             "reply": "1: S1", "prompt_tokens": 1, "completion_tokens": 1, "elapsed_ms": 1.0}
    (row,) = replay([line], [entry | {"protocol": "point"}], protocol="point")
    assert row.kept == {"words": True, "judge": True}
    (row,) = replay([line], [entry | {"protocol": "point", "reply": "1: S2"}], protocol="point")
    assert row.kept == {"words": True, "judge": False}
    for recorded, replayed in (("point", "verdict"), ("verdict", "point")):
        with pytest.raises(RecordingMismatch, match="recorded with the judge protocol"):
            replay([line], [entry | {"protocol": recorded}], protocol=replayed)
    with pytest.raises(RecordingMismatch):  # a recording that names no protocol: "verdict"
        replay([line], [entry], protocol="point")
