"""The answer guards on recorded replies of a real 1.5B model (tests/data/guard), each mode
replayed by pgask_measure.guard_replay (the table of docs/quality.md): what they keep and stop
there may only get better. The LLM judge's verdicts are replayed from its recording; a change
to the grounding guard that makes it ask the judge about other claims fails here until the
judge is recorded again. A correct reply is one that contains a SQuAD gold answer
(eval-answers' measure)."""

from pathlib import Path

import pytest

from pgask.embedders.local import get_local_embedder
from pgask_measure.guard_replay import counts, load, replay

pytestmark = pytest.mark.slow  # the embedding model judges paraphrases

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "guard"
JUDGE = RECORDINGS / "judge-qwen2.5-coder-1.5b.jsonl"
POINT = RECORDINGS / "judge-point-qwen2.5-coder-1.5b.jsonl"  # pgask_measure.judge_point


@pytest.fixture(scope="module")
def squad():
    return replay(load(RECORDINGS / "squad-part-a-110.jsonl"), load(JUDGE),
                  get_local_embedder().embed)


def test_the_recordings_are_complete(squad):
    assert len(squad) == 70  # every generated reply has the judge's recorded verdict


def test_the_grounding_guard_keeps_the_correct_and_stops_as_many_as_measured(squad):
    found = counts(squad, "words")
    # 23 of 24: the 24th "contains" its gold answer in a loop that says one clause twice
    # ("... and was situated in the former Frankish kingdom of Neustria"), a repetition.
    assert found["correct"][0] >= 23 and found["correct"][1] == 24
    assert found["invented"][0] >= 7 and found["invented"][1] == 36
    assert found["wrong"][0] >= 4 and found["wrong"][1] == 10


def test_the_judge_keeps_and_stops_at_least_what_it_did_when_measured(squad):
    """Qwen2.5-Coder-1.5B as the judge (docs/quality.md) misses every goal of issue 32: it
    keeps 21 of 24 correct replies (goal >= 90 %, 22), stops 8 of 36 invented (goal >= 50 %,
    18) and 5 of 10 wrong (goal >= 60 %, 6). These are floors so that a change cannot make it
    worse unnoticed; they are not the goals, which this model does not reach."""
    found = counts(squad, "judge")
    assert found["correct"][0] >= 21 and found["correct"][1] == 24
    assert found["invented"][0] >= 8
    assert found["wrong"][0] >= 5
    words = counts(squad, "words")  # the judge only ever withholds more than the guard alone
    assert all(found[kind][0] >= words[kind][0] for kind in ("invented", "wrong"))


def test_the_pointing_judge_keeps_and_stops_at_least_what_it_did_when_measured():
    """The experiment of pgask_measure.judge_point (the judge points at the sentence that
    states each claim, code checks it), with the same 1.5B model: it meets two goals, stops
    18 of 36 invented (>= 50 %) and 8 of 10 wrong (>= 60 %), but keeps only 10 of 24 correct
    (goal >= 90 %): the model mostly points at S1, or at S1, S2, ... in order, and the check
    rejects a sentence that does not hold the claim. Floors, as above; the product keeps the
    verdict-word judge, which keeps 21."""
    replies = load(RECORDINGS / "squad-part-a-110.jsonl")
    found = counts(replay(replies, load(POINT), get_local_embedder().embed, "point"), "judge")
    assert found["correct"][0] >= 10 and found["correct"][1] == 24
    assert found["invented"][0] >= 18 and found["invented"][1] == 36
    assert found["wrong"][0] >= 8 and found["wrong"][1] == 10
    manual = replay(load(RECORDINGS / "manual-3.jsonl"), load(POINT),
                    get_local_embedder().embed, "point")
    assert sum(r.kept["judge"] for r in manual) >= 1


def test_the_demo_manual_answers():
    """The B-tree and VACUUM FULL answers are shown; the ranking answer, which gives
    ts_rank_cd ts_rank's description (tests/data/guard/README.md), says that sentence twice
    and is caught as a repetition."""
    found = replay(load(RECORDINGS / "manual-3.jsonl"), load(JUDGE), get_local_embedder().embed)
    assert [(r.kind, r.kept["words"], r.kept["judge"]) for r in found] == [
        ("manual", True, True), ("manual", True, True), ("manual", False, False)]
