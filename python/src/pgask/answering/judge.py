"""The LLM judge (answer option guard 'judge'): one more LLM call that says, for each claim of
a generated answer, whether the passage it rests on states it.

The grounding guard (pgask.answering.grounding) checks words and facts: it cannot see "prevent
data from being deleted" said of a passage about a 400-day retention, nor a right name in a
wrong role. After it has attributed each claim to passages, all claims go to an LLM in one
request, each with the passages it rests on (those that support it by words, else those it
cites), and the reply is parsed strictly: one line "<n>: SUPPORTED", "<n>: CONTRADICTED" or
"<n>: NOT STATED" per claim. Nothing else in the reply is read. A claim whose line is missing,
repeated with another verdict, or anything but those three is "malformed", which counts as
not supported: a reply that cannot be read never lets a claim through.

A claim that cites no passage and that no passage supports by words is "not stated" without
asking: there is no passage to judge it against. Lead-ins ("Run this:") and code blocks are not
judged (the grounding guard checks their names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_STATED = "not stated"
MALFORMED = "malformed"  # the judge's reply held no readable verdict for the claim
NOT_JUDGED = "not judged"  # a lead-in or code: nothing to judge

# Reply tokens per claim ("12: NOT STATED" and a line break are about 6), plus a margin: the
# judge's max_tokens, so that a judge that rambles is cut short rather than paid for.
TOKENS_PER_CLAIM = 8
TOKENS_MARGIN = 8
# Each passage is cut to this many characters in the judge's prompt.
PASSAGE_CHARS = 2000

# Tried on 16 recorded SQuAD replies with Qwen2.5-Coder-1.5B: a neutral wording ("decide
# whether the passages state the claim") judged every claim SUPPORTED; this one names the
# usual mistake (the passage says it of another person, place, time or thing than the
# question asks about) and that many answers are wrong.
SYSTEM = (
    "You are a strict fact checker. An answer to a question was split into numbered claims. "
    "For each claim, decide from the passages it names only:\n"
    "SUPPORTED - a passage says exactly this, as the answer to the question asked.\n"
    "CONTRADICTED - a passage says something different.\n"
    "NOT STATED - no passage says it, or the passage says it about another person, place, "
    "time or thing than the question asks about.\n"
    "Many of the answers you check are wrong. "
    "Reply with exactly one line per claim, in the form \"<claim number>: SUPPORTED\", "
    "\"<claim number>: CONTRADICTED\" or \"<claim number>: NOT STATED\", and nothing else.")


def line_pattern(answers: str) -> re.Pattern:
    """A judge's reply line "<claim number>: <answer>", read leniently ("Claim 3:", "3.",
    "**3)**", a trailing full stop); `answers`: the regex of the answers a protocol allows."""
    return re.compile(r"^\s*(?:claim\s*)?(\d+)\s*[:.)\-]\s*\**\s*(" + answers
                      + r")\s*\**\s*\.?\s*$", re.IGNORECASE)


_LINE = line_pattern(r"supported|contradicted|not[\s_]+stated")


@dataclass(frozen=True)
class Item:
    """One claim to judge: its number in the request and the passages (1-based) it rests on."""

    index: int  # the claim's position in Grounding.claims
    text: str
    passages: list[int]


@dataclass(frozen=True)
class Request:
    items: list[Item]  # the claims asked about, numbered 1.. in the prompt
    messages: list[dict]
    max_tokens: int


def items_for(claims, passage_count: int) -> tuple[list[Item], dict[int, str]]:
    """The claims to ask about, and the verdicts known without asking (by claim index):
    lead-ins and code are not judged; a claim with no passage to read is not stated."""
    items, known = [], {}
    for index, claim in enumerate(claims):
        if claim.kind != "statement":
            known[index] = NOT_JUDGED
            continue
        passages = claim.sources if claim.supported else [
            n for n in claim.cited if 1 <= n <= passage_count]
        if not passages:
            known[index] = NOT_STATED
            continue
        items.append(Item(index, claim.text, sorted(set(passages))))
    return items, known


def build_request(question: str, items: Sequence[Item], passages: Sequence[str]) -> Request:
    """The judge's messages: the passages the claims rest on (with their numbers in the
    answer), the question, and the claims, each naming its passages."""
    used = sorted({n for item in items for n in item.passages})
    shown = "\n\n".join(f"[{n}] {_cut(passages[n - 1])}" for n in used)
    user = (f"Passages:\n{shown}\n\nQuestion: {question}\n\nClaims made in the answer:\n"
            f"{listed_claims(items)}\n\nVerdicts, one line per claim (1 to {len(items)}):")
    return Request(list(items), [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": user}],
                   TOKENS_PER_CLAIM * len(items) + TOKENS_MARGIN)


def listed_claims(items: Sequence[Item]) -> str:
    """The claims as the prompt lists them: numbered 1.., each naming its passages."""
    return "\n".join(
        f"{i}. (passage {', '.join(f'[{n}]' for n in item.passages)}) {item.text}"
        for i, item in enumerate(items, 1))


def _cut(text: str) -> str:
    return text if len(text) <= PASSAGE_CHARS else text[:PASSAGE_CHARS].rstrip() + " ..."


def answers_per_claim(reply: str, count: int, pattern: re.Pattern, read) -> list:
    """Each claim's answer (1..count), `read` from the text `pattern` matched; MALFORMED where
    the reply has no line for the claim, or lines that disagree. Other lines are ignored."""
    found: dict[int, set] = {}
    for line in (reply or "").splitlines():
        match = pattern.match(line)
        if match:
            found.setdefault(int(match.group(1)), set()).add(read(match.group(2)))
    return [next(iter(found[n])) if len(found.get(n, ())) == 1 else MALFORMED
            for n in range(1, count + 1)]


def parse(reply: str, count: int) -> list[str]:
    """The verdict per claim 1..count from the judge's reply (answers_per_claim)."""
    return answers_per_claim(reply, count, _LINE,
                             lambda text: " ".join(text.lower().replace("_", " ").split()))


def verdicts(claims, known: dict[int, str], items: Sequence[Item], parsed: Sequence[str]
             ) -> list[str]:
    """Every claim's verdict, in the claims' order."""
    out = dict(known)
    out.update({item.index: verdict for item, verdict in zip(items, parsed, strict=True)})
    return [out[i] for i in range(len(claims))]


def problem(text: str, verdict: str) -> str:
    """The problem sentence for a claim the judge did not find supported."""
    why = {CONTRADICTED: "the passage it rests on contradicts it",
           NOT_STATED: "the passage it rests on does not state it",
           MALFORMED: "the judge's reply gave no readable verdict for it"}[verdict]
    return f'judge: the claim "{_short(text)}" is not supported: {why}'


def decide(grounding, items: Sequence[Item], known: dict[int, str], parsed: Sequence[str],
           failed: str | None = None):
    """The grounding guard's verdict with the judge's: a claim is supported when both find it
    so (the judge reads meaning, the guard facts: numbers, dates, names). Returns the new
    Grounding (claims' `supported` and `reason` updated, one problem per claim the judge did
    not find supported) and each claim's verdict. `failed`: why the judge gave no reply
    (every claim it was asked about is then without a verdict)."""
    from dataclasses import replace

    if failed is not None:
        parsed = [MALFORMED] * len(items)
    found = verdicts(grounding.claims, known, items, parsed)
    claims, problems = [], list(grounding.problems)
    for claim, verdict in zip(grounding.claims, found, strict=True):
        if verdict in (SUPPORTED, NOT_JUDGED) or not claim.supported:
            claims.append(claim)  # the guard's own problem already names an unsupported one
            continue
        text = (f'judge: the claim "{_short(claim.text)}" is not supported: the judge failed '
                f"({failed})" if failed is not None else problem(claim.text, verdict))
        claims.append(replace(claim, supported=False, reason=text.split(": ", 2)[2]))
        problems.append(text)
    return replace(grounding, grounded=not problems, problems=problems, claims=claims), found


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77].rstrip() + "..."


def drop_unsupported(answer: str, grounding) -> str | None:
    """`answer` without its unsupported claims (their spans cut out), or None when no
    supported statement would be left."""
    from pgask.answering.attribution import split_claims

    spans = split_claims(answer)
    if len(spans) != len(grounding.claims):
        return None
    kept_any = False
    pieces, position = [], 0
    for span, claim in zip(spans, grounding.claims, strict=True):
        if claim.supported:
            kept_any = kept_any or claim.kind == "statement"
            continue
        pieces.append(answer[position:span.start])
        position = span.end
    pieces.append(answer[position:])
    kept = " ".join(" ".join(pieces).split(" ")).strip()
    return kept if kept_any and kept else None
