"""Fits the extractive answerer's "I don't know" scorer (pgask.answering.answerability).

SQuAD 2.0 dev (part A), split as scripts/tune_extractive.py splits it: the weights and the
threshold are chosen on the questions of five articles, the figures of the other three show
what that is worth on questions nobody tuned to. Each question gets the paragraphs of its
article ranked by embedding similarity (top 5), as in tune_extractive.py.

1. each feature alone: its AUC for telling answerable questions from unanswerable ones;
2. the logistic regression on all features (numpy, fixed start: reproducible), its AUC, and
   the AUC lost by leaving each feature out (held out);
3. the threshold: the highest probability that still answers --min-answered of the
   answerable tuning questions;
4. the answers at that threshold against the answerer as of --baseline-commit: answerable
   questions answered, unanswerable told "I don't know", answered questions whose cited text
   contains a gold answer, token F1 over answered questions.

--write replaces the fitted constants in python/src/pgask/answering/extractive.py.

Usage: .venv/bin/python scripts/fit_answerability.py [--cache /tmp/squad-vectors.npz] [--write]
(--cache keeps the sentence vectors between runs; the first run embeds ~4,000 texts)
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_extractive as tune  # noqa: E402

from pgask.answering import answerability, extractive  # noqa: E402
from pgask_measure.evaluation import f1_score  # noqa: E402

EXTRACTIVE = tune.ROOT / "python" / "src" / "pgask" / "answering" / "extractive.py"
# main when this script was written: similarity thresholds only, up to three sentences.
BASELINE_COMMIT = "5d477451b0bce28f2d09a07e6f7b33ec0ffee553"
L2 = 1.0


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random answerable question scores above a random unanswerable one
    (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def collect(cases, embedder):
    """Features (rows; NaN where the answerer has no sentence), labels and answer texts."""
    rows, labels, texts, gates = [], [], [], []
    for case in cases:
        labels.append(1 if case.question.answers else 0)
        ranking = extractive.rank(case.vector, case.passages, embedder.embed,
                                  case.question.question)
        gates.append(max(p.score for p in case.passages))
        if ranking is None:
            rows.append(np.full(len(answerability.FEATURES), np.nan))
            texts.append("")
            continue
        rows.append(extractive.answerability_features(case.question.question, ranking,
                                                      case.passages))
        result = extractive.extractive_answer(
            case.vector, case.passages, embedder.embed, question=case.question.question,
            min_similarity=tune.OFF, min_passage_score=tune.OFF, min_answerable=-1.0)
        texts.append(tune._MARKER.sub("", result.text))
    return np.array(rows), np.array(labels), texts, np.array(gates)


def figures(says: np.ndarray, labels: np.ndarray, texts, cases) -> dict[str, float]:
    answerable = labels == 1
    answered = says & answerable
    contains = f1 = 0.0
    for i in np.flatnonzero(answered):
        contains += tune._contains(texts[i], cases[i].question.answers)
        f1 += f1_score(texts[i], cases[i].question.answers)
    n = max(int(answered.sum()), 1)
    return {"answered": 100 * answered.sum() / max(answerable.sum(), 1),
            "idk": 100 * (~says & ~answerable).sum() / max((~answerable).sum(), 1),
            "contains": 100 * contains / n, "f1": 100 * f1 / n,
            "words": float(np.mean([len(texts[i].split()) for i in np.flatnonzero(answered)]))
            if answered.any() else 0.0}


def show(label: str, f: dict[str, float]) -> str:
    return (f"{label:40}{f['answered']:9.1f}{f['idk']:7.1f}{f['contains']:10.1f}"
            f"{f['f1']:7.1f}{f['words']:7.1f}")


HEADER = (f"{'':40}{'answered':>9}{'IDK':>7}{'contains':>10}{'F1':>7}{'words':>7}"
          "   (answered: % of answerable; IDK: % of unanswerable; contains, F1: of answered)")


def constants(scorer: answerability.Scorer, threshold: float, command: str) -> str:
    def numbers(values):
        text = ", ".join(f"{v:.4f}" for v in values)
        return "(" + "\n        ".join(textwrap.wrap(text, 80)) + ")"

    names = textwrap.wrap(", ".join(answerability.FEATURES), 90)
    return (f"# Fitted by `{command}`\n"
            "# on the 5 tuning articles of SQuAD 2.0 dev part A; features:\n"
            + "".join(f"# {line}\n" for line in names)
            + "SCORER = answerability.Scorer(\n"
            f"    mean={numbers(scorer.mean)},\n"
            f"    scale={numbers(scorer.scale)},\n"
            f"    weights={numbers(scorer.weights)},\n"
            f"    bias={scorer.bias:.4f},\n)\n"
            f"DEFAULT_MIN_ANSWERABLE = {threshold:.3f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", default=tune.DEFAULT_SQUAD)
    parser.add_argument("--cache", help="file of sentence vectors kept between runs (.npz)")
    parser.add_argument("--min-answered", type=float, default=0.88,
                        help="share of answerable tuning questions the threshold must answer")
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    parser.add_argument("--write", action="store_true",
                        help="store the fitted constants in extractive.py")
    args = parser.parse_args()

    started = time.monotonic()
    embedder = tune.CachedEmbedder(args.cache)
    by_article, titles = tune.build_cases(args.squad, embedder)
    held_out = [i for i in range(len(by_article)) if i % 3 == 1]
    split = {"tune": [c for i, a in enumerate(by_article) if i not in held_out for c in a],
             "held out": [c for i in held_out for c in by_article[i]]}
    data = {name: collect(cases, embedder) for name, cases in split.items()}
    embedder.save()
    for name, cases in split.items():
        print(f"{name}: {len(cases)} questions, {int(data[name][1].sum())} answerable")

    print("\n1. each feature alone (AUC; 0.5 = no signal, below 0.5 = signal inverted)")
    print(f"{'':22}{'tune':>8}{'held out':>10}")
    for j, name in enumerate(answerability.FEATURES):
        cells = []
        for n in split:
            x, y = data[n][0], data[n][1]
            ok = ~np.isnan(x[:, j])
            cells.append(auc(x[ok, j], y[ok]))
        print(f"{name:22}{cells[0]:8.3f}{cells[1]:10.3f}")

    def usable(n):
        x, y = data[n][0], data[n][1]
        ok = ~np.isnan(x).any(axis=1)
        return x[ok], y[ok], ok

    xt, yt, _ = usable("tune")
    scorer = answerability.fit(xt, yt, l2=L2)
    print(f"\n2. logistic regression (l2={L2}): weights on standardised features")
    for name, w in zip(answerability.FEATURES, scorer.weights, strict=True):
        print(f"   {name:22}{w:+.3f}")
    print(f"   {'bias':22}{scorer.bias:+.3f}")
    probability = {}
    for n in split:
        x = data[n][0]
        probability[n] = np.array([-1.0 if np.isnan(r).any() else scorer.probability(r)
                                   for r in x])
    for n in split:
        print(f"   AUC {n}: {auc(probability[n], data[n][1]):.3f}")
    print("   held-out AUC without each feature:")
    xh, yh, _ = usable("held out")
    for j, name in enumerate(answerability.FEATURES):
        keep = [k for k in range(xt.shape[1]) if k != j]
        s = answerability.fit(xt[:, keep], yt, l2=L2)
        print(f"     - {name:20}{auc(np.array([s.probability(r) for r in xh[:, keep]]), yh):.3f}")

    # The answerer's own gates stay: an off-topic retrieval or no close sentence refuses.
    def says(n, threshold):
        x, _, _, gates = data[n]
        with np.errstate(invalid="ignore"):
            return ((probability[n] >= threshold) & (gates >= extractive.DEFAULT_MIN_PASSAGE_SCORE)
                    & (np.nan_to_num(x[:, 0], nan=-1) >= extractive.DEFAULT_MIN_SIMILARITY))

    y_tune = data["tune"][1]
    candidates = np.round(np.arange(0.20, 0.80, 0.005), 3)
    allowed = [t for t in candidates
               if (says("tune", t) & (y_tune == 1)).sum() >= args.min_answered * y_tune.sum()]
    threshold = float(max(allowed)) if allowed else float(candidates[0])

    print(f"\n3. threshold sweep (chosen: {threshold}, the highest answering >= "
          f"{args.min_answered:.0%} of answerable tuning questions)")
    print(HEADER)
    for t in (0.3, 0.35, 0.4, 0.45, threshold, 0.5, 0.55, 0.6):
        for n in split:
            print(show(f"{n}: min_answerable={t}", figures(says(n, t), data[n][1],
                                                             data[n][2], split[n])))

    print(f"\n4. chosen against the baseline ({args.baseline_commit[:7]})")
    print(HEADER)
    old = tune.baseline(args.baseline_commit, embedder)
    for n, cases in split.items():
        if old is not None:
            outs = tune.run(cases, old)
            said = np.array([bool(o.text) for o in outs])
            print(show(f"{n}: baseline", figures(said, data[n][1], [o.text for o in outs],
                                                 cases)))
        print(show(f"{n}: answerability scorer", figures(says(n, threshold), data[n][1],
                                                         data[n][2], cases)))

    command = "python scripts/fit_answerability.py --write" + (
        f" --min-answered {args.min_answered}" if args.min_answered != 0.88 else "")
    block = constants(scorer, threshold, command)
    print("\n" + block)
    if args.write:
        source = EXTRACTIVE.read_text()
        pattern = re.compile(r"(# FITTED-SCORER-START\n).*?(# FITTED-SCORER-END\n)", re.S)
        EXTRACTIVE.write_text(pattern.sub(lambda m: m[1] + block + m[2], source))
        print(f"written to {EXTRACTIVE}")
    print(f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
