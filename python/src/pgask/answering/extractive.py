"""Extractive answers: the retrieved sentences closest to the question, each with its citation.

This is the offline default: it never writes a word that is not in the retrieved text, and
says "I don't know" when no sentence is close enough to the question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pgask.chunking import split_sentences

NO_ANSWER = "I don't know: the indexed documents do not seem to answer this question."
# Cosine similarities (MiniLM) below which nothing is taken as an answer. Measured on the
# PostgreSQL manual: answerable questions had a best chunk at 0.55-0.65 and a best sentence at
# 0.74-0.83; off-topic ones ("What is the capital of France?") 0.20-0.22 and 0.24-0.40.
# Provisional: to be tuned on SQuAD 2.0 (answerable vs unanswerable).
DEFAULT_MIN_PASSAGE_SCORE = 0.35
DEFAULT_MIN_SIMILARITY = 0.45
DEFAULT_MAX_SENTENCES = 3
# A sentence far below the best one adds noise rather than support.
RELATIVE_CUTOFF = 0.12
MIN_SENTENCE_WORDS = 4


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


def extractive_answer(
    question_vector: np.ndarray,
    passages: Sequence[Passage],
    embed: Callable[[list[str]], np.ndarray],
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    min_passage_score: float = DEFAULT_MIN_PASSAGE_SCORE,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
) -> Answer:
    """Picks up to `max_sentences` sentences from `passages` by similarity to the question.

    `question_vector` and the vectors `embed` returns must be L2-normalised, so a dot product
    is the cosine similarity. Sentences are returned best first, each followed by `[n]`.
    When no passage scored `min_passage_score` in retrieval, the documents are off topic.
    """
    if not any(p.score >= min_passage_score for p in passages):
        return Answer(NO_ANSWER, "no_answer")
    candidates = _candidates(passages)
    if not candidates:
        return Answer(NO_ANSWER, "no_answer")
    scores = embed([c.text for c in candidates]) @ question_vector
    ranked = sorted(range(len(candidates)), key=lambda i: -float(scores[i]))
    best = float(scores[ranked[0]])
    if best < min_similarity:
        return Answer(NO_ANSWER, "no_answer", best_similarity=best)

    chosen = [i for i in ranked[:max_sentences]
              if float(scores[i]) >= max(min_similarity, best - RELATIVE_CUTOFF)]
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts = []
    for i in chosen:
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
