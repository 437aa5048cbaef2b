"""An experiment for issue 32, measurement only: a judge that points at evidence, and code that
checks it, instead of a judge that answers a verdict word (pgask.answering.judge).

The request is the product judge's (same claims, same passages), but the passages' sentences
are numbered S1, S2, ... and the judge is asked for one line per claim: "<n>: S<k>" (the
sentence that states it; two neighbouring ones "<n>: S<k>, S<k+1>") or "<n>: NONE". What it
points at is not trusted: a claim is supported only when the judge points at sentences AND
they hold the claim (`states`: the test the grounding guard applies to a run of sentences of
a passage a claim does not cite - every number, date, quotation and name of the claim, and
ATTRIBUTE_COVERAGE of its content words, in at most ATTRIBUTE_WINDOW neighbouring sentences).

Measured with Qwen2.5-Coder-1.5B (docs/quality.md, "The answer guards on recorded replies"):
it mostly points at S1 (31 of 44 one-claim requests), or at S1, S2, ... in order, rather than
at the sentence that states the claim, and said NONE once in 135 claims, so the check withholds
most correct answers (10 of 24 kept); the product keeps the verdict-word judge. Kept here so
that the recording (tests/data/guard/judge-point-qwen2.5-coder-1.5b.jsonl) replays and a
better model can be measured the same way (scripts/guard_compare.py record-judge --protocol
point, replay --protocol point, bound).

Verdicts: "supported"; "not stated" (the judge points at no sentence); "unverified" (the
sentences it points at do not hold the claim); "malformed" (no readable line for the claim,
lines that disagree, a sentence number not shown, more than ATTRIBUTE_WINDOW sentences, or
sentences that are not neighbours in one passage).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pgask.answering import grounding, judge
from pgask.answering.judge import MALFORMED, NOT_STATED, SUPPORTED, Item, _cut
from pgask.text import split_sentences

UNVERIFIED = "unverified"  # the sentences the judge points at do not hold the claim
PROTOCOL = "point"  # recorded with each reply: a recording replays only with its own protocol

# Reply tokens per claim ("12: S34, S35" and a line break are about 10), plus a margin.
TOKENS_PER_CLAIM = 10
TOKENS_MARGIN = 8

SYSTEM = (
    "You are a strict fact checker. An answer to a question was split into numbered claims, "
    "and the passages it rests on into numbered sentences S1, S2, ... For each claim, find "
    "the sentence that states it: it must say the same thing, about the same person, place, "
    "time or thing as the question asks about. Many of the answers you check are wrong: when "
    "no sentence states the claim, say NONE.\n"
    "Reply with exactly one line per claim, in the form \"<claim number>: S<sentence number>\" "
    "(\"<claim number>: S<k>, S<k+1>\" when it takes two neighbouring sentences) or "
    "\"<claim number>: NONE\", and nothing else.")

_LINE = judge.line_pattern(r"none|s?\d+(?:\s*(?:,|and|&)\s*s?\d+)*")


@dataclass(frozen=True)
class Sentence:
    passage: int  # the passage's number in the answer (1-based)
    position: int  # its position in that passage (0-based)
    text: str


@dataclass(frozen=True)
class Request:
    items: list[Item]  # the claims asked about, numbered 1.. in the prompt
    sentences: list[Sentence]  # the sentences shown, numbered S1.. in the prompt
    messages: list[dict]
    max_tokens: int


def states(claim: str, text: str) -> bool:
    """Whether `text` holds the claim's facts and ATTRIBUTE_COVERAGE of its content words:
    what the grounding guard asks of a run of sentences of a passage the claim does not cite
    (on words alone), with its own helpers."""
    return (grounding._share(grounding._content(claim), grounding._content(text))
            >= grounding.ATTRIBUTE_COVERAGE
            and not grounding._missing(grounding._facts(claim), grounding._Support([text])))


def build_request(question: str, items: Sequence[Item], passages: Sequence[str]) -> Request:
    """The judge's messages: the sentences of the passages the claims rest on, numbered S1..
    (under each passage's number in the answer), the question, and the claims, each naming its
    passages."""
    sentences, blocks = [], []
    for n in sorted({n for item in items for n in item.passages}):
        text = _cut(passages[n - 1])
        lines = [f"[{n}]"]
        for position, (start, end) in enumerate(split_sentences(text) or [(0, len(text))]):
            sentences.append(Sentence(n, position, text[start:end]))
            lines.append(f"S{len(sentences)}. {text[start:end]}")
        blocks.append("\n".join(lines))
    user = ("Passages, sentence by sentence:\n" + "\n\n".join(blocks)
            + f"\n\nQuestion: {question}\n\nClaims made in the answer:\n"
            f"{judge.listed_claims(items)}\n\n"
            f"The sentence that states each claim, one line per claim (1 to {len(items)}):")
    return Request(list(items), sentences, [{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": user}],
                   TOKENS_PER_CLAIM * len(items) + TOKENS_MARGIN)


def pointed(reply: str, count: int) -> list[list[int] | str]:
    """What the judge's reply points at for each claim 1..count: its sentence numbers ([] for
    NONE), or MALFORMED where the reply has no line for it or lines that disagree. Lines that
    are not answers are ignored."""
    def numbers(text: str) -> tuple[int, ...]:
        return () if text.lower() == "none" else tuple(
            sorted({int(n) for n in re.findall(r"\d+", text)}))

    return [answer if answer == MALFORMED else list(answer)
            for answer in judge.answers_per_claim(reply, count, _LINE, numbers)]


def parse(reply: str, request: Request) -> list[str]:
    """Each claim's verdict from the judge's reply: where it points, checked."""
    return [check(item, answer, request.sentences)
            for item, answer in zip(request.items, pointed(reply, len(request.items)),
                                    strict=True)]


def check(item: Item, answer: list[int] | str, sentences: Sequence[Sentence]) -> str:
    """SUPPORTED only when the judge points at shown sentences, at most ATTRIBUTE_WINDOW
    neighbours of one passage, and they hold the claim (`states`)."""
    if answer == MALFORMED:
        return MALFORMED
    if not answer:
        return NOT_STATED
    window = grounding.ATTRIBUTE_WINDOW or 1
    if not all(1 <= n <= len(sentences) for n in answer) or len(answer) > window:
        return MALFORMED
    chosen = [sentences[n - 1] for n in answer]
    if len({s.passage for s in chosen}) > 1 or \
            chosen[-1].position - chosen[0].position != len(chosen) - 1:
        return MALFORMED
    return SUPPORTED if states(item.text, " ".join(s.text for s in chosen)) else UNVERIFIED


def for_decide(verdicts: Sequence[str]) -> list[str]:
    """The verdicts in the product judge's terms (pgask.answering.judge.decide): a claim the
    pointed sentences do not hold is not stated there."""
    return [NOT_STATED if v == UNVERIFIED else v for v in verdicts]
