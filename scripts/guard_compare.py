"""Measures the grounding guard before and after a change on the SAME recorded LLM replies.

Generating is slow (about 20 s per answer for a 1.5B model on two cores) and judging is fast,
so replies are recorded once and every guard is scored on them offline:

  record   asks questions through rag.answer (guard in flag mode) and writes, per question,
           the passages shown and the LLM's reply (the --details format of eval-answers);
  record-judge  asks an LLM judge (guard 'judge') about each recorded reply's claims and
           appends its raw reply, tokens and time, one line per reply (--protocol point /
           yesno: the experiments of pgask_measure.judge_point / judge_yesno);
  replay   replays every guard mode (words alone, words + the recorded judge) on recorded
           replies: keeps-correct / stops-invented / stops-wrong and the judge's cost (yesno:
           at --threshold, then at every threshold and cross-validated);
  bound    what the check of pointed sentences (pgask_measure.judge_point.check) would
           keep and stop if the judge always pointed at the best sentence (an upper bound on
           keeps-correct), at the first one, or at a random one; no model needed;
  score    re-judges recorded replies with two grounding modules (e.g. git main's
           grounding.py and the working tree's) and prints keeps-correct / stops-invented /
           stops-wrong for each, plus every answer whose verdict differs.

  pgask eval-answers --squad FILE --model NAME --limit 110 --details squad.jsonl
  python scripts/guard_compare.py record --model NAME --out manual.jsonl "question" ...
  git show main:python/src/pgask/answering/grounding.py > /tmp/grounding_before.py
  python scripts/guard_compare.py score --before /tmp/grounding_before.py squad.jsonl

A correct answer is a generated one that contains a gold answer (eval-answers' measure).
Measurement only: not part of the product.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from pgask_measure.eval_run import reply_kind
from pgask_measure.evaluation import load_squad


def _module(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def record(args) -> None:
    import psycopg

    from pgask.localdb import database_url
    from pgask_measure.eval_run import _shown_passages

    options = {"log": False, "guard": "flag", "on_llm_error": "error"}
    with psycopg.connect(database_url(), autocommit=True) as conn, \
            open(args.out, "w", encoding="utf-8") as out:
        # The pipeline rag.answer itself takes when none is named.
        pipeline = args.pipeline or conn.execute(
            "SELECT rag._default_pipeline()").fetchone()[0]
        asked = [(q, None) for q in args.questions]
        if args.squad:  # answerable questions first: they are what keeps-correct is made of
            questions = load_squad(args.squad).questions[:args.limit]
            asked += [(q.question, list(q.answers)) for q in questions if q.answers]
            asked += [(q.question, []) for q in questions if not q.answers]
        for question, gold in asked:
            (result,) = conn.execute(
                "SELECT rag.answer(%s, %s, pipeline => %s, model => %s, options => %s)",
                (question, args.k, pipeline, args.model, json.dumps(options))).fetchone()
            generated = result["mode"] == "generated" or "generated_answer" in result
            out.write(json.dumps({
                "id": question, "question": question, "gold": gold, "mode": result["mode"],
                "answer": result["answer"],
                "reply": result.get("generated_answer", result["answer"]) if generated else None,
                "grounded": result["grounded"], "problems": result["problems"],
                "passages": _shown_passages(conn, question, args.k, pipeline)}) + "\n")
            out.flush()
            print(question, "->", result["mode"], file=sys.stderr)


_EMBED = []


def _judge(module, line: dict):
    """The module's verdict, given what the pipeline gives the guard it has (the question and
    the local model for the new guard; main's takes the answer and passages only)."""
    import inspect

    if "question" not in inspect.signature(module.check_grounding).parameters:
        return module.check_grounding(line["reply"], line["passages"])
    if not _EMBED:
        from pgask.embedders.local import get_local_embedder

        _EMBED.append(get_local_embedder().embed)
    return module.check_grounding(line["reply"], line["passages"], question=line["question"],
                                  embed=_EMBED[0])


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def score(args) -> None:
    guards = {"before": _module(args.before), "after": _module(args.after)}
    for setting in args.set or []:  # try a threshold without editing the module
        name, _, value = setting.partition("=")
        setattr(guards["after"], name, _value(value))
    lines = [json.loads(text) for path in args.files for text in open(path, encoding="utf-8")]
    generated = [line for line in lines if line["reply"] is not None]
    print(f"{len(lines)} questions, {len(generated)} generated replies "
          f"({sum(bool(guards['after'].CITATION.search(g['reply'])) for g in generated)} "
          "with [n])")
    verdicts = {name: [_judge(module, line) for line in generated]
                for name, module in guards.items()}
    for name in guards:
        counts = {"correct": [0, 0], "wrong": [0, 0], "invented": [0, 0], "manual": [0, 0]}
        for line, verdict in zip(generated, verdicts[name], strict=True):
            kind = reply_kind(line["reply"], line["gold"])
            counts[kind][0] += 1
            counts[kind][1] += verdict.grounded if kind in ("correct", "manual") \
                else not verdict.grounded
        print(f"{name:7s} keeps-correct {counts['correct'][1]}/{counts['correct'][0]}"
              f"  stops-invented {counts['invented'][1]}/{counts['invented'][0]}"
              f"  stops-wrong {counts['wrong'][1]}/{counts['wrong'][0]}"
              f"  keeps-manual {counts['manual'][1]}/{counts['manual'][0]}")
    if args.show:
        for line, old, new in zip(generated, verdicts["before"], verdicts["after"], strict=True):
            if args.show == "all" or old.grounded != new.grounded:
                print(f"\n## {line['question']}  gold={line['gold']}\nreply: {line['reply']}")
                print(f"before: {old.grounded} {old.problems}")
                print(f"after:  {new.grounded} {new.problems}")
                if getattr(new, "answer", None) and new.answer != line["reply"]:
                    print(f"shown:  {new.answer}")


def judge_request(line: dict, protocol: str = "verdict"):
    """The grounding guard's verdict on a recorded reply and the judge request it leads to
    (what rag.answer with guard 'judge' sends; with protocol "point", what the experiment of
    pgask_measure.judge_point sends; with "yesno", the list of one request per claim of
    pgask_measure.judge_yesno): (grounding, items, known, request)."""
    from pgask.answering import grounding as current
    from pgask.answering import judge
    from pgask_measure import judge_point, judge_yesno

    grounding = _judge(current, line)
    items, known = judge.items_for(grounding.claims, len(line["passages"]))
    build = {"verdict": judge.build_request, judge_point.PROTOCOL: judge_point.build_request,
             judge_yesno.PROTOCOL: judge_yesno.build_requests}[protocol]
    request = build(line["question"], items, line["passages"]) if items else None
    return grounding, items, known, request


def record_judge(args) -> None:
    """Asks the judge about every recorded reply and appends its raw reply, tokens and time
    to --out, one line per reply, as it goes (a run cut short leaves a usable prefix; a rerun
    skips the replies already there)."""
    from pgask.llm.chat import ChatClient, LLMSpec
    from pgask_measure import judge_yesno

    done = set()
    if Path(args.out).exists():
        done = {json.loads(text)["id"] for text in open(args.out, encoding="utf-8")}
    client = ChatClient(LLMSpec("judge", "openai", args.model, args.base_url, None,
                                {"timeout_seconds": args.timeout, "max_retries": 0}))
    lines = [json.loads(text) for path in args.files for text in open(path, encoding="utf-8")]
    with open(args.out, "a", encoding="utf-8") as out:
        for line in lines:
            if line["reply"] is None or line["id"] in done:
                continue
            _, items, _, request = judge_request(line, args.protocol)
            entry = {"id": line["id"], "model": args.model, "protocol": args.protocol,
                     "claims": [[item.text, item.passages] for item in items]}
            if args.protocol == judge_yesno.PROTOCOL:
                # one request per claim, read by its P(yes) (pgask_measure.judge_yesno)
                entry.update(judge_yesno.entry_for([
                    judge_yesno.ask(args.base_url, args.model, one, args.timeout)
                    for one in request or []]))
            elif request is not None:
                reply = client.complete(request.messages, max_tokens=request.max_tokens)
                entry.update(reply=reply.text, prompt_tokens=reply.prompt_tokens,
                             completion_tokens=reply.completion_tokens,
                             elapsed_ms=round(reply.elapsed_ms, 1))
            else:
                entry.update(reply=None, prompt_tokens=0, completion_tokens=0, elapsed_ms=0.0)
            out.write(json.dumps(entry) + "\n")
            out.flush()
            print(line["id"], entry.get("elapsed_ms"), repr(entry["reply"]), file=sys.stderr)


def replay(args) -> None:
    """Every guard mode on recorded replies, the judge's verdicts replayed from --judged."""
    from pgask.embedders.local import get_local_embedder
    from pgask_measure import guard_replay, judge_yesno

    embed = get_local_embedder().embed
    replies = [line for path in args.files for line in guard_replay.load(path)]
    judged = [e for path in args.judged for e in guard_replay.load(path)] if args.judged \
        else None
    if args.protocol == judge_yesno.PROTOCOL and judged:
        by_threshold = guard_replay.replay_at(replies, judged, embed, args.protocol,
                                              sorted({*judge_yesno.GRID, args.threshold}))
        rows = by_threshold[args.threshold]
    else:
        rows = guard_replay.replay(replies, judged, embed, args.protocol)
    print(f"{len(rows)} generated replies"
          + (f" with a recorded judge verdict ({len(judged)} recorded)" if judged else ""))
    if args.protocol == judge_yesno.PROTOCOL and judged:
        print(f"judge: P(yes) >= {args.threshold:g}, fixed in advance")
    print(guard_replay.table(rows))
    if args.protocol == "point" and judged:
        _pointing(replies, judged)
    if args.protocol == judge_yesno.PROTOCOL and judged:
        print(guard_replay.yesno_report(by_threshold))
        _separation(replies, judged)
    if args.show:
        for row in rows:
            if row.kept.get("judge") != row.kept["words"] or args.show == "all":
                print(row.kind, row.kept, row.verdicts, row.id)


def _separation(replies: list[dict], judged: list[dict]) -> None:
    """Whether the yes/no judge's P(yes) tells the kinds of answers apart at all: the lowest
    P(yes) of each answer's claims, its median per kind, and the AUC of correct answers
    against invented and wrong ones (0.5: no better than chance), whatever the words guard
    decided."""
    import statistics

    from pgask_measure import judge_yesno

    recorded = {entry["id"]: entry for entry in judged}
    by_kind: dict[str, list[float]] = {}
    for line in replies:
        entry = recorded.get(line["id"])
        value = judge_yesno.lowest(entry) if line["reply"] is not None and entry else None
        if value is not None:
            by_kind.setdefault(reply_kind(line["reply"], line["gold"]), []).append(value)
    print("lowest P(yes) per answer: " + ", ".join(
        f"{kind} median {statistics.median(values):.3f} ({len(values)})"
        for kind, values in sorted(by_kind.items())))
    for other in ("invented", "wrong"):
        found = judge_yesno.auc(by_kind.get("correct", []), by_kind.get(other, []))
        if found is not None:
            print(f"AUC correct vs {other}: {found:.2f}")


def bound(args) -> None:
    """The judge's deterministic check alone, with a pretend judge that points at: the best
    run of at most ATTRIBUTE_WINDOW neighbouring sentences (any that passes the check), the
    first sentence, or a random one (seeded)."""
    import random

    from pgask.answering import grounding
    from pgask_measure import guard_replay, judge_point

    lines = [line for path in args.files for line in guard_replay.load(path)]
    cases = []
    for line in lines:
        if line["reply"] is None:
            continue
        verdict, items, _, request = judge_request(line, "point")
        cases.append((reply_kind(line["reply"], line["gold"]), verdict.grounded, items, request))
    if args.window:  # after the words guard has judged: only the pointed run's length changes
        grounding.ATTRIBUTE_WINDOW = args.window
    for theta in args.coverage or [grounding.ATTRIBUTE_COVERAGE]:
        grounding.ATTRIBUTE_COVERAGE = theta
        for policy in ("best", "first", "random"):
            rnd = random.Random(0)
            counts = {"correct": [0, 0], "invented": [0, 0], "wrong": [0, 0], "manual": [0, 0]}
            for kind, grounded, items, request in cases:
                kept = grounded
                for item in items:
                    numbers = [i for i, s in enumerate(request.sentences, 1)
                               if s.passage in item.passages]
                    runs = {"best": [list(range(n, n + w + 1)) for n in numbers
                                     for w in range(grounding.ATTRIBUTE_WINDOW or 1)],
                            "first": [numbers[:1]], "random": [[rnd.choice(numbers)]]}[policy]
                    runs = [[n for n in run if n in numbers] for run in runs]
                    kept = kept and any(
                        judge_point.check(item, run, request.sentences) == "supported"
                        for run in runs if run)
                counts[kind][0] += 1
                counts[kind][1] += kept if kind in ("correct", "manual") else not kept
            print(f"coverage {theta} {policy:6s}" + "".join(
                f"  {'keeps' if k in ('correct', 'manual') else 'stops'}-{k} {r}/{n}"
                for k, (n, r) in counts.items() if n))


def _pointing(replies: list[dict], judged: list[dict]) -> None:
    """Where the pointing judge points: at S1 alone, at S<k>, S<k+1>, ... one per claim in
    order, NONE, and at a sentence that holds the claim (when one does)."""
    from pgask_measure import judge_point

    recorded = {entry["id"]: entry for entry in judged}
    one = first = several = in_order = claims = none = holdable = right = 0
    for line in replies:
        entry = recorded.get(line["id"])
        if line["reply"] is None or entry is None or not entry["reply"]:
            continue
        _, items, _, request = judge_request(line, "point")
        answers = judge_point.pointed(entry["reply"], len(items))
        singles = [a[0] for a in answers if isinstance(a, list) and len(a) == 1]
        if len(items) == 1:
            one += 1
            first += answers[0] == [1]
        else:
            several += 1
            in_order += len(singles) == len(items) and singles == list(
                range(singles[0], singles[0] + len(items)))
        for item, answer in zip(items, answers, strict=True):
            claims += 1
            none += answer == []
            holding = [n for n, sentence in enumerate(request.sentences, 1)
                       if judge_point.states(item.text, sentence.text)]
            holdable += bool(holding)
            right += bool(holding) and isinstance(answer, list) and bool(answer) \
                and answer[0] in holding
    print(f"pointing: {one} one-claim requests, {first} at S1; {several} with several claims, "
          f"{in_order} at S<k>, S<k+1>, ... in order; {claims} claims, {none} NONE; "
          f"{holdable} held by a single shown sentence, pointed at one {right} times")


def main() -> None:
    from pgask_measure import judge_yesno
    from pgask_measure.guard_replay import PROTOCOLS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    rec = sub.add_parser("record", help="ask questions, keep the passages and the replies")
    rec.add_argument("--model", required=True, help="a rag.llms name")
    rec.add_argument("--pipeline", help="default: the default pipeline")
    rec.add_argument("--k", type=int, default=5)
    rec.add_argument("--out", required=True)
    rec.add_argument("--squad", metavar="FILE", help="also ask the first --limit questions "
                     "of this SQuAD 2.0 file (answerable ones first), scored against its gold "
                     "answers; --pipeline must be the one eval-answers made for it")
    rec.add_argument("--limit", type=int, default=110)
    rec.add_argument("questions", nargs="*")
    rec.set_defaults(func=record)
    sc = sub.add_parser("score", help="judge recorded replies with two guards")
    sc.add_argument("--before", required=True, help="a grounding.py (e.g. from git main)")
    sc.add_argument("--after", default=str(Path(__file__).parents[1] / "python" / "src" /
                                           "pgask" / "answering" / "grounding.py"))
    sc.add_argument("--show", choices=("changed", "all"), help="print answers")
    sc.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="override a constant of the new guard, e.g. ATTRIBUTE_COVERAGE=0.4")
    sc.add_argument("files", nargs="+", help="JSON lines from eval-answers --details / record")
    sc.set_defaults(func=score)
    jr = sub.add_parser("record-judge", help="record the LLM judge's verdicts on recorded "
                        "replies (guard 'judge'), for replay without the model")
    jr.add_argument("--base-url", required=True, help="an OpenAI-compatible /v1 endpoint")
    jr.add_argument("--model", required=True)
    jr.add_argument("--timeout", type=float, default=600.0)
    jr.add_argument("--out", required=True, help="JSON lines, appended to")
    jr.add_argument("--protocol", choices=PROTOCOLS, default="verdict",
                    help="verdict: the product's judge; point: pgask_measure.judge_point; "
                    "yesno: pgask_measure.judge_yesno")
    jr.add_argument("files", nargs="+", help="recorded replies (record / eval-answers --details)")
    jr.set_defaults(func=record_judge)
    bd = sub.add_parser("bound", help="the judge's sentence check with a pretend judge "
                        "(best / first / random sentence): bounds without a model")
    bd.add_argument("--coverage", type=float, action="append",
                    help="ATTRIBUTE_COVERAGE to try (repeatable; default: the guard's own)")
    bd.add_argument("--window", type=int, help="the most neighbouring sentences the judge "
                    "may point at (default: the guard's ATTRIBUTE_WINDOW)")
    bd.add_argument("files", nargs="+", help="recorded replies")
    bd.set_defaults(func=bound)
    rp = sub.add_parser("replay", help="every guard mode on recorded replies, the judge "
                        "replayed from its recording: the table of docs/quality.md")
    rp.add_argument("--judged", action="append", help="record-judge output")
    rp.add_argument("--protocol", choices=PROTOCOLS, default="verdict",
                    help="the protocol the --judged recording was made with")
    rp.add_argument("--threshold", type=float, default=judge_yesno.THRESHOLD,
                    help="yesno: a claim is supported when P(yes) >= this (default 0.5, "
                    "fixed in advance); the curve and a cross-validated threshold follow")
    rp.add_argument("--show", choices=("changed", "all"), help="print verdicts per reply")
    rp.add_argument("files", nargs="+", help="recorded replies")
    rp.set_defaults(func=replay)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
