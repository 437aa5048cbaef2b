"""Tunes the extractive answerer (pgask.answering.extractive) on SQuAD 2.0, without a database.

Each question gets as passages the paragraphs of its article ranked by embedding similarity
to it (top 5, Passage.score = cosine), as rag.answer would retrieve them from a pipeline that
holds that article. Sentences are answers, so the measure of an answer is whether it contains
a gold answer text (SQuAD-normalised, whole words), not exact match; token F1 is reported too.

Choices are made on the questions of five articles; the same figures on the other three
(every third article, from the second) show how much of the gain is fitted to the first five:

1. keyword weight: the share of keyword overlap in a sentence's score, for the answers that
   contain a gold text (nothing refused); ties go to the better F1;
2. relative cutoff: how far below the best sentence others still join the answer, for the
   best containment + F1 (containment alone would always take three sentences);
3. the "I don't know" thresholds, on the best sentence similarity and on the best passage
   score: the pair with the best overall accuracy among those that still answer
   --min-answered of the answerable tuning questions.

Overall accuracy = (answerable answered with a gold text + unanswerable refused) / questions.
The baseline is extractive.py as of --baseline-commit, with its own defaults.

Usage: .venv/bin/python scripts/tune_extractive.py [--squad FILE] [--min-answered 0.9]
(about 3 minutes on 2 cores: each distinct sentence is embedded once, in batches by length)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "src"))

from pgask.answering import extractive  # noqa: E402
from pgask.embedders.local import DIMENSIONS, get_local_embedder  # noqa: E402
from pgask_measure.evaluation import SquadQuestion, f1_score, load_squad, normalize_answer  # noqa: E402

DEFAULT_SQUAD = "/work/shared/data/squad2/dev-part-a.json"
# The last commit that changed extractive.py before keyword scoring.
BASELINE_COMMIT = "21bd9c1f986f9765f251c02b640de0358177ba3d"
TOP_K = 5
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
CUTOFFS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 1.0)
THRESHOLDS = tuple(round(0.3 + 0.025 * i, 3) for i in range(17))  # 0.30 .. 0.70
GATES = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4)
OFF = float("-inf")  # a threshold that refuses nothing, so one run serves every threshold
_MARKER = re.compile(r"\s*\[\d+\]")


class CachedEmbedder:
    """Embeds each distinct sentence once: a paragraph's sentences come up for many questions.
    The model sorts every batch of misses by length itself, so padding stays small."""

    def __init__(self, cache: str | None = None) -> None:
        self._model = get_local_embedder()
        self._vectors: dict[str, np.ndarray] = {}
        # Optional file of vectors from an earlier run (same model): measuring again then
        # costs no embedding, which matters on a loaded machine.
        self._cache = cache
        if cache and Path(cache).exists():
            with np.load(cache, allow_pickle=False) as stored:
                self._vectors.update(zip(stored["texts"].tolist(), stored["vectors"],
                                         strict=True))

    def save(self) -> None:
        if self._cache:
            texts = list(self._vectors)
            np.savez(self._cache, texts=np.array(texts),
                     vectors=np.stack([self._vectors[t] for t in texts]))

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._model.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])


@dataclass(frozen=True)
class Case:
    question: SquadQuestion
    vector: np.ndarray
    passages: list[extractive.Passage]


@dataclass(frozen=True)
class Outcome:
    text: str  # citation markers removed; empty when the answerer said "I don't know"
    best_similarity: float
    top_passage: float


def build_cases(squad_file: str, embedder: CachedEmbedder | None = None,
                ) -> tuple[list[list[Case]], list[str]]:
    """The questions grouped by article (file order), each with its retrieved paragraphs."""
    squad = load_squad(squad_file)
    articles: dict[str, list[str]] = {}
    for context_id in squad.contexts:
        articles.setdefault(context_id.split("-")[0], []).append(context_id)
    model = embedder or get_local_embedder()
    # Each paragraph is one chunk: its vector and its sentences' come from one forward pass,
    # as the worker stores them (pgask.queue), so the answerer embeds no sentence here either.
    texts = [text for _, text in squad.contexts.values()]
    spans = [extractive.sentence_spans(text) for text in texts]
    vectors, pooled = get_local_embedder().embed_with_spans(texts, spans)
    paragraphs = dict(zip(squad.contexts, vectors, strict=True))
    sentences = {cid: {span: v for span, v in zip(spans[i], pooled[i], strict=True)
                       if not np.isnan(v).any()} for i, cid in enumerate(squad.contexts)}
    questions = model.embed([q.question for q in squad.questions])
    grouped: dict[str, list[Case]] = {article: [] for article in articles}
    for question, vector in zip(squad.questions, questions, strict=True):
        article = question.context_id.split("-")[0]
        ids = articles[article]
        scores = np.stack([paragraphs[c] for c in ids]) @ vector
        passages = [
            extractive.Passage(squad.contexts[ids[i]][1], squad.contexts[ids[i]][0], chunk_id=i,
                               document_id=i, source=ids[i], score=float(scores[i]),
                               sentences=sentences[ids[i]])
            for i in np.argsort(-scores, kind="stable")[:TOP_K]
        ]
        grouped[article].append(Case(question, vector, passages))
    titles = [squad.contexts[ids[0]][0] for ids in articles.values()]
    return list(grouped.values()), titles


def run(cases: Sequence[Case], answer: Callable[[Case], extractive.Answer]) -> list[Outcome]:
    outcomes = []
    for case in cases:
        result = answer(case)
        text = _MARKER.sub("", result.text) if result.mode == "extractive" else ""
        similarity = OFF if result.best_similarity is None else result.best_similarity
        outcomes.append(Outcome(text, similarity, max(p.score for p in case.passages)))
    return outcomes


def current(embedder: CachedEmbedder, **settings) -> Callable[[Case], extractive.Answer]:
    """extractive_answer as it is now, with `settings` and the question for keyword scoring."""
    return lambda case: extractive.extractive_answer(
        case.vector, case.passages, embedder.embed, question=case.question.question, **settings)


def _contains(text: str, gold: Sequence[str]) -> bool:
    padded = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(g)} " in padded for g in gold)


def measure(cases: Sequence[Case], outcomes: Sequence[Outcome], min_similarity: float = OFF,
            min_passage_score: float = OFF) -> dict[str, float]:
    """The figures of the report, in percent; thresholds refuse on top of the run's own."""
    answered = contained = f1 = refused = answerable = 0
    for case, outcome in zip(cases, outcomes, strict=True):
        says = bool(outcome.text) and outcome.best_similarity >= min_similarity \
            and outcome.top_passage >= min_passage_score
        gold = case.question.answers
        if gold:
            answerable += 1
            answered += says
            if says:
                contained += _contains(outcome.text, gold)
                f1 += f1_score(outcome.text, gold)
        else:
            refused += not says
    unanswerable = len(cases) - answerable
    return {
        "answered": 100 * answered / max(answerable, 1),
        "contains": 100 * contained / max(answerable, 1),
        "f1": 100 * f1 / max(answerable, 1),
        "idk": 100 * refused / max(unanswerable, 1),
        "accuracy": 100 * (contained + refused) / max(len(cases), 1),
    }


def baseline(commit: str, embedder: CachedEmbedder) -> Callable[[Case], extractive.Answer] | None:
    """extractive_answer as it was at `commit`, with its defaults; None without git history."""
    source = subprocess.run(
        ["git", "show", f"{commit}:python/src/pgask/answering/extractive.py"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if source.returncode != 0:
        print(f"no baseline: git show {commit} failed: {source.stderr.strip()}")
        return None
    module = types.ModuleType("extractive_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source.stdout, f"extractive.py@{commit[:7]}", "exec"), module.__dict__)
    return lambda case: module.extractive_answer(case.vector, case.passages, embedder.embed)


HEADER = f"{'':34}{'answered':>9}{'contains':>9}{'F1':>7}{'IDK':>7}{'accuracy':>9}"


def row(label: str, figures: dict[str, float]) -> str:
    return (f"{label:34}{figures['answered']:9.1f}{figures['contains']:9.1f}"
            f"{figures['f1']:7.1f}{figures['idk']:7.1f}{figures['accuracy']:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", default=DEFAULT_SQUAD, help="SQuAD 2.0 JSON file")
    parser.add_argument("--min-answered", type=float, default=0.9,
                        help="share of answerable tuning questions the threshold must answer")
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    args = parser.parse_args()

    started = time.monotonic()
    embedder = CachedEmbedder()
    by_article, titles = build_cases(args.squad)
    held_out = [i for i in range(len(by_article)) if i % 3 == 1]
    tune = [c for i, article in enumerate(by_article) if i not in held_out for c in article]
    test = [c for i in held_out for c in by_article[i]]
    tune_titles = ", ".join(t for i, t in enumerate(titles) if i not in held_out)
    print(f"tune: {len(tune)} questions ({tune_titles})")
    print(f"held out: {len(test)} questions ({', '.join(titles[i] for i in held_out)})")
    answerable = [c for c in tune if c.question.answers]
    ungated = {"min_similarity": OFF, "min_passage_score": OFF}

    print("\n1. keyword weight (tune split, answerable questions, nothing refused)")
    print(HEADER)
    weights = {}
    for weight in WEIGHTS:
        weights[weight] = measure(answerable, run(answerable, current(
            embedder, keyword_weight=weight, **ungated)))
        print(row(f"keyword_weight={weight}", weights[weight]))
    weight = max(WEIGHTS, key=lambda w: (weights[w]["contains"], weights[w]["f1"]))

    print(f"\n2. relative cutoff at keyword_weight={weight}")
    print(HEADER)
    cutoffs = {}
    for cutoff in CUTOFFS:
        cutoffs[cutoff] = measure(answerable, run(answerable, current(
            embedder, keyword_weight=weight, relative_cutoff=cutoff, **ungated)))
        print(row(f"relative_cutoff={cutoff}", cutoffs[cutoff]))
    cutoff = max(CUTOFFS, key=lambda c: cutoffs[c]["contains"] + cutoffs[c]["f1"])

    settings = {"keyword_weight": weight, "relative_cutoff": cutoff}
    outcomes = {"tune": run(tune, current(embedder, **settings, **ungated)),
                "held out": run(test, current(embedder, **settings, **ungated))}
    cases = {"tune": tune, "held out": test}
    grid = {(gate, threshold): measure(tune, outcomes["tune"], threshold, gate)
            for gate in GATES for threshold in THRESHOLDS}
    allowed = [key for key, figures in grid.items()
               if figures["answered"] >= 100 * args.min_answered]
    gate, threshold = max(allowed or grid, key=lambda key: grid[key]["accuracy"])

    def both(label: str, **thresholds) -> str:
        return "  |".join(row(label, measure(cases[n], outcomes[n], **thresholds))[i:]
                          for n, i in (("tune", 0), ("held out", 34)))

    title = f"{'':34}{'tune':>41}  |{'held out':>41}\n{HEADER}  |{HEADER[34:]}"
    print(f"\n3. 'I don't know' threshold on the best sentence similarity, {settings}, "
          f"min_passage_score={gate}")
    print(title)
    for t in THRESHOLDS:
        print(both(f"min_similarity={t}", min_similarity=t, min_passage_score=gate))
    print(f"\n4. passage score gate at min_similarity={threshold}")
    print(title)
    for g in GATES:
        print(both(f"min_passage_score={g}", min_similarity=threshold, min_passage_score=g))

    print(f"\nchosen: keyword_weight={weight} relative_cutoff={cutoff} min_similarity="
          f"{threshold} min_passage_score={gate}: the best tune accuracy answering >= "
          f"{args.min_answered:.0%} of answerable questions")
    print(HEADER)
    old = baseline(args.baseline_commit, embedder)
    for name, split in cases.items():
        if old is not None:
            label = f"{name}: baseline {args.baseline_commit[:7]}"
            print(row(label, measure(split, run(split, old))))
        chosen = run(split, current(embedder, **settings, min_similarity=threshold,
                                    min_passage_score=gate))
        print(row(f"{name}: chosen", measure(split, chosen)))
        refusals = [Outcome("", OFF, OFF)] * len(split)
        print(row(f"{name}: always 'I don't know'", measure(split, refusals)))
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
