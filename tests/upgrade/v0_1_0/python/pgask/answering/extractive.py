"""Extractive answers: the retrieved sentences that best answer the question, each cited.

This is the offline default: it never writes a word that is not in the retrieved text, and
says "I don't know" when no sentence is close enough to the question. Sentences are ranked by
embedding similarity mixed with keyword overlap (pgask.answering.keywords): the embedding
finds sentences on the question's topic, the keywords find the one that names its terms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pgask.answering.keywords import keyword_scores, words
from pgask.chunking import split_sentences

NO_ANSWER = "I don't know: the indexed documents do not seem to answer this question."
# Tuned with `.venv/bin/python scripts/tune_extractive.py` on SQuAD 2.0 (dev-part-a): chosen
# on 5 articles (1,870 questions), measured on the other 3 (935 questions, 45% answerable).
# Held out, against the previous defaults (similarity only, thresholds 0.45 and 0.35):
#   answers that contain a gold answer           75.9% -> 79.8% of answerable questions
#   answerable questions answered                95.9% -> 94.7%
#   unanswerable questions told "I don't know"  16.2% -> 17.9%
#   overall accuracy                             42.7% -> 45.3% (refusing all: 55.6%)
# SQuAD 2.0's unanswerable questions are written to resemble their paragraph, so similarity
# tells them apart poorly: refusing more trades answerable questions away almost one for one
# (at 0.6, 77% of answerable ones answered, 47% of unanswerable ones refused). The thresholds
# are the best accuracy that still answers 90% of the answerable tuning questions. On the
# PostgreSQL manual, off-topic questions scored 0.20-0.22 (best chunk) and 0.24-0.40 (best
# sentence), answerable ones 0.55-0.65 and 0.74-0.83: both thresholds keep those apart.
DEFAULT_MIN_PASSAGE_SCORE = 0.25  # no retrieved chunk this close to the question: off topic
DEFAULT_MIN_SIMILARITY = 0.475  # no sentence this close to the question: "I don't know"
DEFAULT_MAX_SENTENCES = 3
# Share of keyword overlap in a sentence's score, the rest being embedding similarity. On
# tuning, answers containing a gold answer went from 76.9% (0.0) to 81.8% (0.6).
DEFAULT_KEYWORD_WEIGHT = 0.6
# A sentence scoring this far below the best one adds noise rather than support.
DEFAULT_RELATIVE_CUTOFF = 0.15
MIN_SENTENCE_WORDS = 4
# Sentences this alike say the same thing (overlapping chunks cut one sentence two ways):
# the answer keeps the better ranked one.
NEAR_DUPLICATE_COSINE = 0.95
NEAR_DUPLICATE_JACCARD = 0.8


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk, as the answerer needs it."""

    chunk_id: int
    document_id: int
    title: str
    source: str
    content: str
    char_start: int  # offset of the chunk in its document, so spans point into the document
    ordinal: int = 0
    score: float = 1.0  # retrieval score (cosine similarity to the question)


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: int
    document_id: int
    title: str
    source: str
    chunk: int
    span: tuple[int, int]  # character offsets in the document of the first cited sentence


@dataclass(frozen=True)
class Answer:
    text: str
    mode: str  # "extractive" or "no_answer"
    citations: list[Citation] = field(default_factory=list)
    best_similarity: float | None = None


@dataclass(frozen=True)
class _Candidate:
    passage_index: int
    start: int
    end: int
    text: str


def _with_example(content: str, end: int) -> int:
    """A sentence ending in ':' that introduces a code block ends after the block instead:
    "To create a unique index on title:" is no answer without the command that follows."""
    if not content[:end].rstrip().endswith(":"):
        return end
    after = content[end:]
    stripped = after.lstrip()
    if not stripped.startswith("```"):
        return end
    opening = end + len(after) - len(stripped)
    closing = content.find("```", opening + 3)
    return end if closing < 0 else closing + 3


def _candidates(passages: Sequence[Passage]) -> list[_Candidate]:
    seen: set[str] = set()
    found = []
    for index, passage in enumerate(passages):
        for start, end in split_sentences(passage.content):
            if passage.content[start:end].lstrip().startswith("```"):
                continue  # a bare code block is cited through the sentence that introduces it
            end = _with_example(passage.content, end)
            text = " ".join(passage.content[start:end].replace("```", " ").split())
            key = text.lower()
            if len(text.split()) < MIN_SENTENCE_WORDS or key in seen:
                continue
            seen.add(key)
            found.append(_Candidate(index, start, end, text))
    return found


def _near_duplicate(a: int, b: int, vectors: np.ndarray, texts: Sequence[str]) -> bool:
    if float(vectors[a] @ vectors[b]) > NEAR_DUPLICATE_COSINE:
        return True
    words_a, words_b = set(words(texts[a])), set(words(texts[b]))
    union = words_a | words_b
    return bool(union) and len(words_a & words_b) / len(union) > NEAR_DUPLICATE_JACCARD


def _select(scores: np.ndarray, vectors: np.ndarray, texts: Sequence[str],
            limit: int, cutoff: float) -> list[int]:
    """Up to `limit` sentences best first, within `cutoff` of the best, no two alike."""
    order = np.argsort(-scores, kind="stable")
    floor = float(scores[order[0]]) - cutoff
    chosen: list[int] = []
    for i in order:
        if len(chosen) == limit or float(scores[i]) < floor:
            break
        if not any(_near_duplicate(i, j, vectors, texts) for j in chosen):
            chosen.append(int(i))
    return chosen


def extractive_answer(
    question_vector: np.ndarray,
    passages: Sequence[Passage],
    embed: Callable[[list[str]], np.ndarray],
    *,
    question: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    min_passage_score: float = DEFAULT_MIN_PASSAGE_SCORE,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
    keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
    relative_cutoff: float = DEFAULT_RELATIVE_CUTOFF,
) -> Answer:
    """Picks up to `max_sentences` sentences from `passages` that answer the question.

    `question_vector` and the vectors `embed` returns must be L2-normalised, so a dot product
    is the cosine similarity. A sentence scores `(1 - keyword_weight) * similarity +
    keyword_weight * keyword overlap` with `question` (similarity alone when `question` is
    None). Sentences are returned best first, each followed by `[n]`, down to
    `relative_cutoff` below the best score.

    "I don't know" when no passage scored `min_passage_score` in retrieval (the documents are
    off topic) or no sentence's similarity (`best_similarity`) reaches `min_similarity`.
    Similarity alone decides that: keyword overlap finds the answering sentence, but told
    answerable SQuAD questions from unanswerable ones worse than similarity did.
    """
    if not any(p.score >= min_passage_score for p in passages):
        return Answer(NO_ANSWER, "no_answer")
    candidates = _candidates(passages)
    if not candidates:
        return Answer(NO_ANSWER, "no_answer")
    texts = [c.text for c in candidates]
    vectors = embed(texts)
    similarity = vectors @ question_vector
    best = float(similarity.max())
    if best < min_similarity:
        return Answer(NO_ANSWER, "no_answer", best_similarity=best)
    scores = similarity
    if question is not None:
        scores = (1 - keyword_weight) * similarity + keyword_weight * keyword_scores(
            question, texts)

    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts = []
    for i in _select(scores, vectors, texts, max_sentences, relative_cutoff):
        candidate = candidates[i]
        passage = passages[candidate.passage_index]
        if candidate.passage_index not in numbers:
            numbers[candidate.passage_index] = len(numbers) + 1
            citations.append(Citation(
                n=numbers[candidate.passage_index], chunk_id=passage.chunk_id,
                document_id=passage.document_id, title=passage.title, source=passage.source,
                chunk=passage.ordinal,
                span=(passage.char_start + candidate.start, passage.char_start + candidate.end),
            ))
        parts.append(f"{candidate.text} [{numbers[candidate.passage_index]}]")
    return Answer(" ".join(parts), "extractive", citations, best)
