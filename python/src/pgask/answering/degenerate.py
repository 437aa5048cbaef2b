"""Degenerate answers, caught without a model: what a small model writes when it loops,
echoes, or runs past its turn. Each check returns a named problem, "NAME: why", that the
grounding guard adds to the answer's problems (so the answer is not grounded):

- repetition: a sentence or clause said twice or more, or a run of REPEAT_WORDS words said
  REPEAT_RUNS times or more (a loop without punctuation);
- restates the question (one that asks, ending in "?"): at least RESTATED_SHARE of the
  answer's content words, and at least RESTATED_MIN_WORDS of them, come from the question,
  and none of the others is in the passages shown (it adds nothing its sources say; "The
  river that bounded the Duchy was the Epte" adds one word, the answer, and is not one);
- longer than its sources: more words than all the passages shown together, and more than
  LONGER_MIN_WORDS (a one-line passage may be answered in a sentence a little longer);
- text after the stop sequence: a chat template's end-of-turn token ("<|im_end|>",
  "</s>", ...) written out in the reply with text after it (the model went on to write the
  next turn).

The thresholds were checked on the 73 recorded replies of tests/data/guard
(tests/unit/test_guard_recordings.py): they flag three, each a repetition or an echo - a
SQuAD reply counted correct because it contains its gold answer inside a loop that says one
clause twice, a wrong one that only restates its question, and the demo's ranking answer
that gives two functions the same sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from pgask.answering.attribution import CITATION, split_claims
from pgask.answering.keywords import terms, words

REPEAT_MIN_WORDS = 3  # shorter repeated sentences ("Yes.") are not counted
REPEAT_CLAUSE_WORDS = 5  # nor clauses shorter than this ("for example")
REPEAT_WORDS = 8
REPEAT_RUNS = 3
RESTATED_SHARE = 0.8
RESTATED_MIN_WORDS = 5
LONGER_MIN_WORDS = 40

STOP_SEQUENCES = ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>",
                  "<|start_header_id|>", "<|end|>", "<|user|>", "<|assistant|>",
                  "<end_of_turn>", "<start_of_turn>", "</s>", "[/INST]", "[INST]")

_CLAUSE_SPLIT = re.compile(r"[,;:]\s+")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def repetition(answer: str) -> str | None:
    plain = CITATION.sub(" ", answer)
    pieces = []
    for claim in split_claims(plain):
        if claim.code:
            continue
        clauses = [c for c in _CLAUSE_SPLIT.split(claim.text)
                   if len(words(c)) >= REPEAT_CLAUSE_WORDS]
        pieces.append(claim.text)
        if len(clauses) > 1:
            pieces.extend(clauses)
    counted: Counter = Counter()
    written = {}  # the first way each repeated piece was written, to quote it
    for piece in pieces:
        key = " ".join(words(piece))
        if len(key.split()) >= REPEAT_MIN_WORDS:
            counted[key] += 1
            written.setdefault(key, piece.strip().rstrip(".,;:"))
    repeated = [(key, n) for key, n in counted.items() if n >= 2]
    if repeated:
        key, n = max(repeated, key=lambda item: (item[1], len(item[0])))
        return f'repetition: "{_short(written[key])}" is said {n} times'
    found = words(plain)
    runs = Counter(tuple(found[i:i + REPEAT_WORDS])
                   for i in range(len(found) - REPEAT_WORDS + 1))
    looped = [(run, n) for run, n in runs.items() if n >= REPEAT_RUNS]
    if looped:
        run, n = max(looped, key=lambda item: item[1])
        return f'repetition: "{_short(" ".join(run))}" is said {n} times'
    return None


def restated(answer: str, question: str | None, passages: Sequence[str]) -> str | None:
    if question is None or not question.rstrip().endswith("?"):
        return None
    said = set(terms(CITATION.sub(" ", answer)))
    asked = set(terms(question))
    sources = set(terms(" ".join(passages)))
    if (len(said) >= RESTATED_MIN_WORDS and not (said - asked) & sources
            and len(said & asked) >= RESTATED_SHARE * len(said)):
        return (f"restates the question: {len(said & asked)} of the answer's {len(said)} "
                f"content words are the question's")
    return None


def longer_than_sources(answer: str, passages: Sequence[str]) -> str | None:
    said = len(words(CITATION.sub(" ", answer)))
    shown = sum(len(words(p)) for p in passages)
    if passages and said > max(shown, LONGER_MIN_WORDS):
        return f"longer than its sources: {said} words, the passages shown hold {shown}"
    return None


def after_stop(answer: str) -> str | None:
    for marker in STOP_SEQUENCES:
        at = answer.find(marker)
        if at >= 0 and answer[at + len(marker):].strip(" \n\t" + "".join(STOP_SEQUENCES)):
            return (f'text after the stop sequence: the reply goes on after "{marker}" '
                    f"({len(answer) - at - len(marker)} characters)")
    return None


def problems(answer: str, passages: Sequence[str], question: str | None) -> list[str]:
    """The named problems of `answer`, in the order above; [] for an ordinary answer."""
    return [p for p in (repetition(answer), restated(answer, question, passages),
                        longer_than_sources(answer, passages), after_stop(answer)) if p]
