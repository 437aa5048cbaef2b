"""The grounding guard on recorded replies of a real 1.5B model (tests/data/guard): what it
keeps and stops there may only get better. The figures are those measured when the guard
learned to re-attribute claims (docs/measured.md); a change that loses any of them must say
why there. A correct reply is one that contains a SQuAD gold answer (eval-answers' measure)."""

import json
from pathlib import Path

import pytest

from pgask.answering.grounding import check_grounding
from pgask.embedders.local import get_local_embedder
from pgask_measure.eval_run import reply_kind

pytestmark = pytest.mark.slow  # the embedding model judges paraphrases

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "guard"


def verdicts(name: str) -> list[tuple[str, bool]]:
    """(kind, kept) per recorded reply, kind as pgask_measure.eval_run.reply_kind says."""
    embed = get_local_embedder().embed
    found = []
    for text in (RECORDINGS / name).read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        result = check_grounding(line["reply"], line["passages"], question=line["question"],
                                 embed=embed)
        found.append((reply_kind(line["reply"], line["gold"]), result.grounded))
    return found


def count(found, kind: str, kept: bool) -> int:
    return sum(1 for k, g in found if k == kind and g == kept)


def test_squad_replies_keep_the_correct_and_stop_as_many_as_measured():
    found = verdicts("squad-part-a-110.jsonl")
    assert len(found) == 70
    assert count(found, "correct", True) == 24  # of 24: every correct reply kept
    assert count(found, "invented", False) >= 7  # of 36
    assert count(found, "wrong", False) >= 4  # of 10


def test_the_demo_manual_answers_are_shown_not_withheld():
    assert verdicts("manual-3.jsonl") == [("manual", True)] * 3
