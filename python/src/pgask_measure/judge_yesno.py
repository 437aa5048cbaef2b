"""An experiment for issue 32, measurement only: a judge asked one yes/no question per claim,
read by the probability it gives "yes", instead of a verdict word per claim in one request
(pgask.answering.judge) or a sentence number (pgask_measure.judge_point).

For each claim the product judge would ask about (judge.items_for: same claims, same passages)
one short request: the passages the claim rests on (each cut as the product judge cuts it,
judge.PASSAGE_CHARS), the question, the claim, and "Does the passage state this claim? Answer
yes or no.", with max_tokens 1, temperature 0 and the top TOP_LOGPROBS log-probabilities of
that one token (the OpenAI `logprobs` / `top_logprobs` fields, which llama.cpp's server behind
`pgask serve-llm` returns). P(yes) is the probability of the yes tokens over yes and no tokens
("Yes", " yes", "YES", ...; `p_yes`). A claim is supported when P(yes) >= the threshold;
a reply without log-probabilities, or whose top tokens hold neither yes nor no, is "malformed"
(not supported): a reply that cannot be read never lets a claim through. Claims are then
decided as the product judge decides them (judge.decide).

The passages come first in the prompt and the claim last, so that the server's prompt cache
reuses the passage for the next claim that rests on the same one.

Measured with Qwen2.5-Coder-1.5B (docs/quality.md, "The answer guards on recorded replies";
tests/data/guard/judge-yesno-qwen2.5-coder-1.5b.jsonl): at P(yes) >= 0.5 it keeps 20 of 24
correct answers, stops 11 of 36 invented and 5 of 10 wrong; with a cross-validated threshold
21/24, 10/36, 4/10; no threshold meets issue 32's three goals even fitted. The lowest P(yes)
of an answer's claims does not tell correct answers from invented ones (AUC 0.44) or wrong
ones (0.51): the model does not read. The product keeps the verdict-word judge; this stays
replayable (scripts/guard_compare.py record-judge / replay --protocol yesno) for a better
model.

The threshold is not fitted to the answers it is scored on: THRESHOLD (0.5) is fixed in
advance, and `cross_validate` chooses one on half the answers and scores it on the other half
(a fixed split by a hash of the answer's id), both ways. GRID, the thresholds tried, and
`choose`'s rule were fixed before the recording was made.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pgask.answering.judge import MALFORMED, NOT_STATED, SUPPORTED, Item, _cut

PROTOCOL = "yesno"  # recorded with each reply: a recording replays only with its own protocol
THRESHOLD = 0.5  # fixed in advance: P(yes) at least this -> supported
TOP_LOGPROBS = 5
# The thresholds cross-validation chooses from (and the curve's), fixed before recording:
# steps of 0.05, and finer near 1, where a model that says yes to nearly everything puts
# its probabilities.
GRID = tuple(sorted({round(i / 20, 3) for i in range(21)} | {0.975, 0.99, 0.995, 0.999}))
# What cross-validation aims for on the half it chooses on (issue 32's goals): keep at least
# this share of the correct answers, then stop as many invented and wrong ones as possible.
KEEP_GOAL = 0.9

SYSTEM = ("You are a strict fact checker. A claim is stated by the passage only if the passage "
          "says it about the same person, place, time or thing as the question asks about.")
ASK = "Does the passage state this claim? Answer yes or no."


@dataclass(frozen=True)
class Request:
    item: Item
    messages: list[dict]
    max_tokens: int = 1


def build_request(question: str, item: Item, passages: Sequence[str]) -> Request:
    """One claim's request: its passages, the question, the claim, the yes/no question."""
    shown = "\n\n".join(f"[{n}] {_cut(passages[n - 1])}" for n in item.passages)
    word = "Passage" if len(item.passages) == 1 else "Passages"
    user = f"{word}:\n{shown}\n\nQuestion: {question}\nClaim: {item.text}\n\n{ASK}"
    return Request(item, [{"role": "system", "content": SYSTEM},
                          {"role": "user", "content": user}])


def build_requests(question: str, items: Sequence[Item], passages: Sequence[str]
                   ) -> list[Request]:
    return [build_request(question, item, passages) for item in items]


def body(model: str, request: Request) -> dict:
    """The /v1/chat/completions request body."""
    return {"model": model, "messages": request.messages, "max_tokens": request.max_tokens,
            "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}


def _word(token: str) -> str | None:
    word = token.strip().lower()
    return word if word in ("yes", "no") else None


def p_yes(top: Sequence[Sequence] | None) -> float | None:
    """P(yes) normalised over the yes and no tokens among `top` ([token, logprob] pairs, any
    case and leading space), or None when there are none of either (or `top` is unreadable)."""
    mass = {"yes": 0.0, "no": 0.0}
    try:
        for token, logprob in top or ():
            word = _word(str(token))
            if word is not None:
                mass[word] += math.exp(float(logprob))
    except (TypeError, ValueError):
        return None
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


def read(response: dict) -> dict:
    """What is recorded of a server's response: the reply's text, the first token's top
    log-probabilities as [token, logprob] pairs (None when it gave none), P(yes) and tokens."""
    reply, top = None, None
    try:
        choice = response["choices"][0]
        reply = (choice.get("message") or {}).get("content")
        first = ((choice.get("logprobs") or {}).get("content") or [None])[0]
        if first is not None:
            top = [[entry["token"], entry["logprob"]] for entry in first["top_logprobs"]]
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    usage = response.get("usage") or {} if isinstance(response, dict) else {}
    return {"reply": reply, "top_logprobs": top, "p_yes": p_yes(top),
            "prompt_tokens": usage.get("prompt_tokens") or 0,
            "completion_tokens": usage.get("completion_tokens") or 0}


def ask(base_url: str, model: str, request: Request, timeout: float = 600.0) -> dict:
    """Sends one claim's request; what `read` records, plus elapsed_ms."""
    started = time.monotonic()
    http = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions", data=json.dumps(body(model, request)).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(http, timeout=timeout) as response:
        answer = read(json.loads(response.read()))
    answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return answer


def verdict(probability: float | None, threshold: float = THRESHOLD) -> str:
    if probability is None:
        return MALFORMED
    return SUPPORTED if probability >= threshold else NOT_STATED


def parse(entry: dict, count: int, threshold: float = THRESHOLD) -> list[str]:
    """The verdict per claim 1..count from a recorded entry's `answers` (one per claim; the
    claim's P(yes) recomputed from its top log-probabilities): MALFORMED for all when the
    entry does not hold exactly one answer per claim."""
    answers = entry.get("answers") or []
    if len(answers) != count:
        return [MALFORMED] * count
    return [verdict(p_yes(answer.get("top_logprobs")), threshold) for answer in answers]


def entry_for(answers: list[dict]) -> dict:
    """An entry's totals over its claims' answers (the fields every recording has)."""
    return {"answers": answers, "calls": len(answers),
            "reply": " ".join(str(a["reply"]) for a in answers) if answers else None,
            "prompt_tokens": sum(a["prompt_tokens"] for a in answers),
            "completion_tokens": sum(a["completion_tokens"] for a in answers),
            "elapsed_ms": round(sum(a["elapsed_ms"] for a in answers), 1)}


def half(answer_id: str) -> int:
    """The answer's half (0 or 1) for cross-validation: fixed by a hash of its id."""
    return hashlib.sha256(answer_id.encode("utf-8")).digest()[0] % 2


Score = dict  # kind -> (answers the guard gets right, answers of that kind)


def choose(scores: dict[float, Score]) -> float:
    """The threshold to use, from each threshold's score on the half chosen on: of those that
    keep at least KEEP_GOAL of the correct answers, the one that stops the most invented and
    wrong; if none does, the one that keeps the most correct (then stops the most). Ties: the
    middle of the tied thresholds (the lower middle of an even number)."""
    def keeps(s: Score) -> float:
        right, total = s["correct"]
        return right / total if total else 1.0

    def stops(s: Score) -> int:
        return s["invented"][0] + s["wrong"][0]

    meeting = [t for t in scores if keeps(scores[t]) >= KEEP_GOAL]
    if meeting:
        best = max(stops(scores[t]) for t in meeting)
        tied = [t for t in meeting if stops(scores[t]) == best]
    else:
        best = max((keeps(s), stops(s)) for s in scores.values())
        tied = [t for t in scores if (keeps(scores[t]), stops(scores[t])) == best]
    tied.sort()
    return tied[(len(tied) - 1) // 2]


def cross_validate(ids: Sequence[str], score: Callable[[float, set[str]], Score],
                   grid: Sequence[float] = GRID) -> list[tuple[int, float, Score]]:
    """2-fold cross-validation: for each half, the threshold `choose`n on the other half's
    scores, and its score on this half. `score(threshold, ids)` scores the answers `ids`."""
    halves = [{i for i in ids if half(i) == h} for h in (0, 1)]
    out = []
    for h in (0, 1):
        train = halves[1 - h]
        chosen = choose({t: score(t, train) for t in grid})
        out.append((h, chosen, score(chosen, halves[h])))
    return out


def summed(scores: Sequence[Score]) -> Score:
    kinds = {kind for s in scores for kind in s}
    return {kind: (sum(s.get(kind, (0, 0))[0] for s in scores),
                   sum(s.get(kind, (0, 0))[1] for s in scores)) for kind in sorted(kinds)}


def lowest(entry: dict) -> float | None:
    """The lowest P(yes) of an entry's claims (None: no claim asked about, or one unreadable):
    the claim that decides whether the answer is kept."""
    found = [p_yes(answer.get("top_logprobs")) for answer in entry.get("answers") or []]
    return None if not found or None in found else min(found)


def auc(higher: Sequence[float], lower: Sequence[float]) -> float | None:
    """The chance that a value of `higher` exceeds one of `lower` (ties count half): 0.5 is no
    separation at all."""
    if not higher or not lower:
        return None
    return sum((h > g) + 0.5 * (h == g) for h in higher for g in lower) / len(higher) / len(lower)
