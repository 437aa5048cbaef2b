"""The judge's verdicts are parsed strictly (issue 32), and degenerate answers are named
without a model."""

import pytest

from pgask.answering import judge
from pgask.answering.degenerate import problems
from pgask.answering.grounding import check_grounding

PASSAGE = ("Audit logs are kept for 400 days. After that they are deleted by a nightly job. "
           "Operators can export them to cold storage before then.")


@pytest.mark.parametrize(("reply", "expected"), [
    ("1: SUPPORTED\n2: CONTRADICTED\n3: NOT STATED", ["supported", "contradicted",
                                                      "not stated"]),
    ("Verdicts:\n2: not stated\n1: Supported.\n3: **CONTRADICTED**",
     ["supported", "not stated", "contradicted"]),
    ("1: SUPPORTED\n3: SUPPORTED", ["supported", judge.MALFORMED, "supported"]),
    ("1: SUPPORTED\n1: CONTRADICTED\n2: SUPPORTED\n3: SUPPORTED",
     [judge.MALFORMED, "supported", "supported"]),
    ("1: SUPPORTED because it says so\n2: YES\n3: SUPPORTED",
     [judge.MALFORMED, judge.MALFORMED, "supported"]),
    ("I'm sorry, but I cannot help with that.", [judge.MALFORMED] * 3),
    ("", [judge.MALFORMED] * 3),
])
def test_a_verdict_is_read_only_from_its_own_line(reply, expected):
    assert judge.parse(reply, 3) == expected


def test_every_unsupported_verdict_withholds_and_names_the_claim():
    answer = "Audit logs are kept for 400 days [1]. They are deleted by a nightly job [1]."
    grounding = check_grounding(answer, [PASSAGE])
    assert grounding.grounded
    items, known = judge.items_for(grounding.claims, 1)
    assert [(i.text, i.passages) for i in items] == [
        ("Audit logs are kept for 400 days.", [1]), ("They are deleted by a nightly job.", [1])]
    request = judge.build_request("How long are audit logs kept?", items, [PASSAGE])
    assert request.max_tokens == 2 * judge.TOKENS_PER_CLAIM + judge.TOKENS_MARGIN
    for reply, verdict in (("1: SUPPORTED\n2: SUPPORTED", None),
                           ("1: SUPPORTED\n2: NOT STATED", "does not state it"),
                           ("1: SUPPORTED", "gave no readable verdict")):
        decided, verdicts = judge.decide(grounding, items, known, judge.parse(reply, 2))
        assert decided.grounded is (verdict is None)
        assert verdicts[0] == "supported"
        if verdict:
            (problem,) = decided.problems
            assert problem.startswith('judge: the claim "They are deleted by a nightly job."')
            assert verdict in problem
    decided, _ = judge.decide(grounding, items, known, [], failed="timed out")
    assert [c.supported for c in decided.claims] == [False, False]
    assert judge.drop_unsupported(answer, judge.decide(
        grounding, items, known, ["supported", "contradicted"])[0]) == \
        "Audit logs are kept for 400 days [1]."


def test_a_sentence_said_ten_times_is_a_named_problem():
    sentence = "Retention prevents data from being deleted [1]. "
    result = check_grounding(sentence * 10, [PASSAGE],
                             question="What does the 400-day retention do?")
    assert not result.grounded
    assert result.problems[0] == ('repetition: "Retention prevents data from being deleted" '
                                  "is said 10 times")


@pytest.mark.parametrize(("answer", "named"), [
    ("The logs are kept, the logs are kept, the logs are kept for a while and then "
     "the logs are kept, the logs are kept.", "repetition"),
    ("keep the audit logs keep the audit logs keep the audit logs keep the audit logs keep "
     "the audit logs keep the audit logs keep the audit logs", "repetition"),
    ("How long are the audit logs for operators kept?", "restates the question"),
    ("Audit logs are kept for 400 days [1]. " + "Cold storage holds exports. " * 2,
     "repetition"),
    ("Audit logs are kept for 400 days [1].<|im_end|>\n<|im_start|>user\nThanks!",
     "text after the stop sequence"),
])
def test_degenerate_answers_are_named(answer, named):
    found = problems(answer, [PASSAGE], "How long are the audit logs for operators kept?")
    assert [p.split(":")[0] for p in found][:1] == [named]


def test_an_answer_longer_than_its_sources_is_named():
    padded = "Logs are kept for 400 days. " + " ".join(f"Copy {i} is stored." for i in range(10))
    assert problems(padded, ["Logs: 400 days."], None) == [
        "longer than its sources: 46 words, the passages shown hold 3"]
    assert problems("Logs are kept for 400 days, then a nightly job deletes them.",
                    ["Logs: 400 days."], None) == []


def test_ordinary_answers_are_not_degenerate():
    for answer in ("Audit logs are kept for 400 days [1].",
                   "The audit logs are kept for 400 days, then deleted by a nightly job [1].",
                   "Audit logs are kept for 400 days.<|im_end|>"):
        assert problems(answer, [PASSAGE], "How long are the audit logs kept?") == []
