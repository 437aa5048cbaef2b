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
code); "yesno" that of pgask_measure.judge_yesno (one yes/no request per claim, read by its
P(yes) against a threshold). A recording holds the protocol it was made with ("verdict" when
it names none) and replays only with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgask.answering import judge
from pgask.answering.grounding import check_grounding
from pgask_measure import judge_point, judge_yesno
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


PROTOCOLS = ("verdict", judge_point.PROTOCOL, judge_yesno.PROTOCOL)


def replay(replies: list[dict], judged: list[dict] | None, embed=None,
           protocol: str = "verdict", threshold: float = judge_yesno.THRESHOLD
           ) -> list[Replayed]:
    """Each generated reply's verdict per mode. `judged`: the judge recording (None: the
    "words" mode only), made with `protocol`; a reply it lacks is left out (a partial
    recording scores what it holds). `threshold`: protocol "yesno"'s P(yes) threshold."""
    return replay_at(replies, judged, embed, protocol, [threshold])[threshold]


def replay_at(replies: list[dict], judged: list[dict] | None, embed=None,
              protocol: str = "verdict", thresholds: Sequence[float] = (judge_yesno.THRESHOLD,)
              ) -> dict[float, list[Replayed]]:
    """`replay` at each of `thresholds` (protocol "yesno"; the others ignore them), the
    grounding guard run once per reply."""
    recorded = {entry["id"]: entry for entry in judged or []}
    out: dict[float, list[Replayed]] = {t: [] for t in thresholds}
    for line in replies:
        if line["reply"] is None or (judged is not None and line["id"] not in recorded):
            continue
        grounding = check_grounding(line["reply"], line["passages"],
                                    question=line["question"], embed=embed)
        kind = reply_kind(line["reply"], line["gold"])
        if judged is None:
            for rows in out.values():
                rows.append(Replayed(line["id"], kind, {"words": grounding.grounded},
                                     0.0, 0, 0, 0, []))
            continue
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
        calls = entry.get("calls", 1 if entry.get("reply") else 0)
        for threshold, rows in out.items():
            decided, found = judge.decide(grounding, items, known,
                                          parse(protocol, entry, items, line, threshold))
            rows.append(Replayed(line["id"], kind,
                                 {"words": grounding.grounded, "judge": decided.grounded},
                                 entry["elapsed_ms"] or 0.0, entry["prompt_tokens"] or 0,
                                 entry["completion_tokens"] or 0, calls, found))
    return out


def parse(protocol: str, entry: dict, items: list, line: dict,
          threshold: float = judge_yesno.THRESHOLD) -> list[str]:
    """The judge's verdict per item, read from its recorded entry with `protocol`'s parser."""
    reply = entry.get("reply") or ""
    if protocol == "verdict":
        return judge.parse(reply, len(items))
    if protocol == judge_yesno.PROTOCOL:
        return judge_yesno.parse(entry, len(items), threshold)
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


def yesno_report(by_threshold: dict[float, list[Replayed]]) -> str:
    """Protocol "yesno" at every threshold replayed (the curve, for information: chosen on
    the answers it scores, it would be fitted to them), then 2-fold cross-validation
    (judge_yesno.cross_validate): a threshold chosen on each half of the answers, scored on
    the other, the two halves summed: the figure that is not fitted to what it scores."""
    lines = ["| P(yes) >= | keeps correct | stops invented | stops wrong | keeps manual |",
             "|---|---|---|---|---|"]
    for threshold, rows in sorted(by_threshold.items()):
        c = counts(rows, "judge")
        lines.append(f"| {threshold:g} | {' | '.join(_share(*c[k]) for k in KINDS)} |")
    rows = next(iter(by_threshold.values()))
    if not any(r.kind == "correct" for r in rows):  # nothing to choose a threshold by
        return "\n".join(lines)
    by_id = {t: {r.id: r for r in rs} for t, rs in by_threshold.items()}

    def score(threshold: float, ids: set[str]) -> dict:
        return counts([by_id[threshold][i] for i in ids], "judge")

    folds = judge_yesno.cross_validate([r.id for r in rows], score,
                                       [t for t in judge_yesno.GRID if t in by_threshold])
    lines.append("\n2-fold cross-validation (threshold chosen on one half, scored on the other):")
    for half, chosen, s in folds:
        lines.append(f"half {half} ({sum(n for _, n in s.values())} answers): chosen "
                     f"P(yes) >= {chosen:g} on the other half -> "
                     + ", ".join(f"{k} {_share(*s[k])}" for k in KINDS if s[k][1]))
    total = judge_yesno.summed([s for _, _, s in folds])
    lines.append("both halves: " + ", ".join(f"{k} {_share(*total[k])}" for k in KINDS
                                               if total.get(k, (0, 0))[1]))
    return "\n".join(lines)


def _share(right: int, total: int) -> str:
    return f"{right}/{total} ({right / total:.0%})" if total else "-"
