"""The answer guards replayed on recorded LLM replies (tests/data/guard): what each mode keeps
and stops, and what the LLM judge costs, without the models that wrote the replies.

A reply is recorded with the passages it was shown (scripts/guard_compare.py record, or
`pgask eval-answers --details`); the judge's reply to the request guard "judge" makes for it
is recorded beside it (scripts/guard_compare.py record-judge), keyed by the reply's id and the
claims asked about. Replaying rebuilds that request from the grounding guard of the working
tree: when the guard now asks about other claims or passages, the recording does not match
and replay says so instead of scoring a request the judge never saw.

Modes: "words" is the grounding guard alone (guard "replace" and "flag" withhold or flag what
it does not find grounded); "judge" adds the LLM judge's verdicts (guard "judge").

Protocols: "verdict" is the product's judge (pgask.answering.judge: a verdict word per claim);
"point" the experiment of pgask_measure.judge_point (a sentence number per claim, checked by
code). A recording holds the protocol it was made with ("verdict" when it names none) and
replays only with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pgask.answering import judge
from pgask.answering.grounding import check_grounding
from pgask_measure import judge_point
from pgask_measure.eval_run import reply_kind

KINDS = ("correct", "invented", "wrong", "manual")


@dataclass(frozen=True)
class Replayed:
    id: str
    kind: str  # reply_kind: correct, invented, wrong, manual
    kept: dict[str, bool]  # mode -> whether the answer is shown as generated (grounded)
    judge_ms: float  # the judge's recorded time (0: no call needed)
    judge_prompt_tokens: int
    judge_completion_tokens: int
    calls: int
    verdicts: list[str]


class RecordingMismatch(Exception):
    """The judge recording does not hold the request the guard now makes."""


def load(path: Path | str) -> list[dict]:
    return [json.loads(text) for text in Path(path).read_text(encoding="utf-8").splitlines()
            if text.strip()]


PROTOCOLS = ("verdict", judge_point.PROTOCOL)


def replay(replies: list[dict], judged: list[dict] | None, embed=None,
           protocol: str = "verdict") -> list[Replayed]:
    """Each generated reply's verdict per mode. `judged`: the judge recording (None: the
    "words" mode only), made with `protocol`; a reply it lacks is left out (a partial
    recording scores what it holds)."""
    recorded = {entry["id"]: entry for entry in judged or []}
    out = []
    for line in replies:
        if line["reply"] is None or (judged is not None and line["id"] not in recorded):
            continue
        grounding = check_grounding(line["reply"], line["passages"],
                                    question=line["question"], embed=embed)
        kept = {"words": grounding.grounded}
        found, cost = [], {"elapsed_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
        if judged is not None:
            entry = recorded[line["id"]]
            items, known = judge.items_for(grounding.claims, len(line["passages"]))
            asked = [[item.text, item.passages] for item in items]
            if asked != entry["claims"]:
                raise RecordingMismatch(
                    f"{line['id']}: the guard now asks the judge about {asked}, the recording "
                    f"holds {entry['claims']}: record the judge again "
                    "(scripts/guard_compare.py record-judge)")
            if entry.get("protocol", "verdict") != protocol:
                raise RecordingMismatch(
                    f"{line['id']}: recorded with the judge protocol "
                    f"{entry.get('protocol', 'verdict')!r}, replayed with {protocol!r}")
            decided, found = judge.decide(grounding, items, known,
                                          parse(protocol, entry["reply"] or "", items, line))
            kept["judge"] = decided.grounded
            cost = entry
        out.append(Replayed(line["id"], reply_kind(line["reply"], line["gold"]), kept,
                            cost["elapsed_ms"] or 0.0, cost["prompt_tokens"] or 0,
                            cost["completion_tokens"] or 0, 1 if cost.get("reply") else 0,
                            found))
    return out


def parse(protocol: str, reply: str, items: list, line: dict) -> list[str]:
    """The judge's verdict per item, read from its reply with `protocol`'s parser."""
    if protocol == "verdict":
        return judge.parse(reply, len(items))
    request = judge_point.build_request(line["question"], items, line["passages"])
    return judge_point.for_decide(judge_point.parse(reply, request))


def counts(rows: list[Replayed], mode: str) -> dict[str, tuple[int, int]]:
    """kind -> (answers the mode gets right, answers of that kind): correct and manual ones
    kept, invented and wrong ones stopped."""
    out = {}
    for kind in KINDS:
        of_kind = [r for r in rows if r.kind == kind]
        right = sum(r.kept[mode] if kind in ("correct", "manual") else not r.kept[mode]
                    for r in of_kind)
        out[kind] = (right, len(of_kind))
    return out


def table(rows: list[Replayed]) -> str:
    """A Markdown table: mode x keeps correct, stops invented, stops wrong, added latency."""
    modes = list(rows[0].kept) if rows else []
    lines = ["| guard | keeps correct | stops invented | stops wrong | keeps manual "
             "| added per answer |", "|---|---|---|---|---|---|"]
    for mode in modes:
        c = counts(rows, mode)
        cells = [_share(*c[kind]) for kind in KINDS]
        if mode == "judge":
            n = len(rows)
            cost = (f"{sum(r.judge_ms for r in rows) / n / 1000:.1f} s, "
                    f"{sum(r.calls for r in rows) / n:.2f} calls, "
                    f"{sum(r.judge_prompt_tokens for r in rows) / n:.0f} + "
                    f"{sum(r.judge_completion_tokens for r in rows) / n:.1f} tokens")
        else:
            cost = "none (no model)"
        lines.append(f"| {mode} | {' | '.join(cells)} | {cost} |")
    return "\n".join(lines)


def _share(right: int, total: int) -> str:
    return f"{right}/{total} ({right / total:.0%})" if total else "-"
