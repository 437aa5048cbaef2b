"""Is the question answered by the retrieved sentences at all? A small, transparent scorer.

Similarity alone tells SQuAD 2.0's unanswerable questions from answerable ones poorly (they are
written to resemble their paragraph: AUC ~0.65). What gives them away is usually a detail: a
name, a number or a term of the question that no sentence has, or a "when" question whose best
sentence holds no date. `features` measures such signals for the answerer's candidate
sentences, and `answerable_probability` combines them by a logistic regression whose weights
`scripts/fit_answerability.py` fitted on the tuning articles of SQuAD 2.0 dev (part A) only.

Pure: the standard library and numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pgask.answering.keywords import STOPWORDS, terms, words

# Names and numbers of a question: the words an adversarial unanswerable question swaps.
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]*")
_NUMBER_WORDS = frozenset("""
one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
hundred thousand million billion trillion dozen half first second third fourth fifth
""".split())
_MONTHS = frozenset("""january february march april may june july august september october
november december""".split())
_DATE_WORDS = _MONTHS | frozenset("century centuries decade year era bc ad".split())

# The expected answer type from the question's wording, tried in this order.
_TYPES = (
    ("number", re.compile(r"\bhow (many|much|long|old|far|large|big|tall|often|fast|high|"
                          r"deep|wide|heavy)\b|\bwhat (percentage|percent|number|amount|"
                          r"proportion|fraction)\b", re.I)),
    ("date", re.compile(r"\bwhen\b|\b(what|which|in what) (year|years|century|decade|date|"
                        r"month|day|period|time)\b", re.I)),
    ("name", re.compile(r"\bwho\b|\bwhom\b|\bwhose\b", re.I)),
    ("place", re.compile(r"\bwhere\b|\b(what|which) (country|city|state|region|place|"
                         r"continent|island|river|town|location)\b", re.I)),
)

FEATURES = ("best_similarity", "top_passage", "best_coverage", "missing_terms",
            "key_terms_in_best", "type_known", "type_in_best", "margin", "agreement",
            "pairs_in_best", "negation_mismatch")
_NEGATIONS = frozenset("not no never nor none nothing neither cannot without".split())


def expected_type(question: str) -> str | None:
    """"number", "date", "name", "place" or None when the wording does not say."""
    for name, pattern in _TYPES:
        if pattern.search(question):
            return name
    return None


def key_terms(question: str) -> set[str]:
    """The question's names (capitalised words not opening it) and numbers, folded."""
    found = {w for m in _NAME.findall(question) for w in words(m)}
    found |= {w for w in words(question) if w[0].isdigit()}
    return {w for w in found if w not in STOPWORDS}


def has_type(kind: str | None, sentence: str, question: str) -> bool:
    """Whether `sentence` holds something of the expected kind the question does not name."""
    if kind is None:
        return False
    asked = set(words(question))
    tokens = [w for w in words(sentence) if w not in asked]
    if kind in ("number", "date"):
        if any(t[0].isdigit() for t in tokens):
            return True
        vocabulary = _NUMBER_WORDS if kind == "number" else _DATE_WORDS
        return any(t in vocabulary for t in tokens)
    # A name or a place: a capitalised word that is not the sentence's first and not asked.
    return any(w not in asked and w not in STOPWORDS
               for m in _NAME.findall(sentence) for w in words(m))


def _pairs(text: str) -> set[tuple[str, str]]:
    """Adjacent content words: "Norman conquest" stays a pair when each word also occurs
    elsewhere, which is how a question that swaps one detail still covers every term."""
    found = terms(text)
    return set(zip(found, found[1:], strict=False))


def _negated(text: str) -> bool:
    return any(w in _NEGATIONS or w.endswith("n't") for w in words(text))


def features(question: str, sentences: Sequence[str], similarity: np.ndarray,
             keyword: np.ndarray, scores: np.ndarray,
             passage_scores: Sequence[float]) -> np.ndarray:
    """The answerability signals, in the order of FEATURES, for one question.

    `sentences` are the candidate sentences, `similarity` their cosine to the question,
    `keyword` their keyword scores and `scores` the answerer's ranking scores (the best of
    which is the sentence the answer cites first); `passage_scores` the retrieval scores.
    """
    wanted = set(terms(question))
    present = [wanted.intersection(terms(s)) for s in sentences]
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    second = float(scores[order[1]]) if len(order) > 1 else 0.0
    coverage = max((len(p) / len(wanted) for p in present), default=0.0) if wanted else 1.0
    seen = set().union(*present) if present else set()
    missing = len(wanted - seen) / len(wanted) if wanted else 0.0
    keys = key_terms(question)
    best_words = set(words(sentences[best]))
    key_share = len(keys & best_words) / len(keys) if keys else 1.0
    kind = expected_type(question)
    asked_pairs = _pairs(question)
    return np.array([
        float(similarity.max()),
        max(passage_scores, default=0.0),
        coverage,
        missing,
        key_share,
        float(kind is not None),
        float(has_type(kind, sentences[best], question)),
        float(scores[best]) - second,
        float(int(np.argmax(similarity)) == int(np.argmax(keyword))),
        len(asked_pairs & _pairs(sentences[best])) / len(asked_pairs) if asked_pairs else 1.0,
        float(_negated(question) and not _negated(sentences[best])),
    ], dtype=np.float64)


@dataclass(frozen=True)
class Scorer:
    """Logistic regression on standardised features: P(answerable) = sigmoid(b + w.z)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def probability(self, x: np.ndarray) -> float:
        z = (np.asarray(x, dtype=np.float64) - np.array(self.mean)) / np.array(self.scale)
        return 1.0 / (1.0 + math.exp(-(self.bias + float(np.dot(self.weights, z)))))


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 3000,
        rate: float = 0.5) -> Scorer:
    """Fits a Scorer by gradient descent on the mean log loss plus `l2`/n * |w|^2 / 2.

    Deterministic (zero start, full batch): the same data gives the same weights.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    w = np.zeros(z.shape[1])
    b = 0.0
    n = len(y)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= rate * (z.T @ (p - y) / n + l2 * w / n)
        b -= rate * float(np.mean(p - y))
    return Scorer(tuple(mean.round(4)), tuple(scale.round(4)), tuple(w.round(4)), round(b, 4))
