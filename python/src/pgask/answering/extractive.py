"""Extractive answers: the retrieved sentences that best answer the question, each cited.

This is the offline default: it never writes a word that is not in the retrieved text, and
says "I don't know" when no sentence is close enough to the question or the answerability
scorer (pgask.answering.answerability) judges that the sentences do not answer it. Sentences
are ranked by embedding similarity mixed with keyword overlap (pgask.answering.keywords): the
embedding finds sentences on the question's topic, the keywords find the one that names its
terms; the answer is the fewest of them that cover the question's terms. A sentence's vector
is the one stored with its chunk (Passage.sentences, read in the chunk's context at index time)
when there is one; only the others are embedded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pgask.answering import answerability
from pgask.answering.keywords import keyword_scores, terms, words
from pgask.retrieval.passage import Passage
from pgask.text import split_sentences

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
# A floor under the answerability scorer (below): it was 0.475 when similarity decided alone;
# at 0.40 it leaves SQuAD's near-miss questions to the scorer, while the manual's off-topic
# questions are still refused by the passage gate (best chunk 0.20-0.22).
DEFAULT_MIN_SIMILARITY = 0.40  # no sentence this close to the question: "I don't know"
DEFAULT_MAX_SENTENCES = 3
# Whether the sentences answer the question at all (pgask.answering.answerability): a logistic
# regression on answerability signals, refit with the command below (docs/quality.md has its
# figures). Below DEFAULT_MIN_ANSWERABLE the answer is "I don't know".
# FITTED-SCORER-START
# Fitted by `python scripts/fit_answerability.py --write --min-answered 0.85`
# on the 5 tuning articles of SQuAD 2.0 dev part A; features:
# best_similarity, top_passage, best_coverage, missing_terms, key_terms_in_best, type_known,
# type_in_best, margin, agreement, pairs_in_best, negation_mismatch
SCORER = answerability.Scorer(
    mean=(0.5789, 0.5335, 0.6502, 0.2028, 0.8194, 0.3861, 0.2995, 0.1729, 0.5075, 0.3035,
        0.0572),
    scale=(0.1300, 0.1413, 0.2294, 0.2129, 0.3325, 0.4869, 0.4580, 0.1515, 0.4999, 0.3050,
        0.2323),
    weights=(0.3613, 0.0952, 0.1600, 0.1394, 0.0940, -0.3473, 0.2395, -0.0376, 0.1206,
        0.0539, -0.6794),
    bias=-0.2284,
)
DEFAULT_MIN_ANSWERABLE = 0.365
# FITTED-SCORER-END
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
    answerable: float | None = None  # the answerability scorer's probability, if it ran


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


def _sentences(content: str):
    """(start, end, text) of each sentence of `content` that can be cited: a sentence
    introducing a code block ends after the block, and very short ones are left out."""
    for start, end in split_sentences(content):
        if content[start:end].lstrip().startswith("```"):
            continue  # a bare code block is cited through the sentence that introduces it
        end = _with_example(content, end)
        text = " ".join(content[start:end].replace("```", " ").split())
        if len(text.split()) >= MIN_SENTENCE_WORDS:
            yield start, end, text


def sentence_spans(content: str) -> list[tuple[int, int]]:
    """The spans of the sentences the answerer can cite from a chunk of `content`: what the
    index stores a vector for (pgask.queue), so that answering embeds none of them."""
    return [(start, end) for start, end, _ in _sentences(content)]


def _candidates(passages: Sequence[Passage]) -> list[_Candidate]:
    seen: set[str] = set()
    found = []
    for index, passage in enumerate(passages):
        for start, end, text in _sentences(passage.content):
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            found.append(_Candidate(index, start, end, text))
    return found


def _vectors(candidates: Sequence[_Candidate], passages: Sequence[Passage],
             embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """The candidates' vectors: those stored with their chunk, the rest embedded now."""
    found: list[np.ndarray | None] = []
    for c in candidates:
        stored = passages[c.passage_index].sentences
        found.append(None if stored is None else stored.get((c.start, c.end)))
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        for i, vector in zip(missing, embed([candidates[i].text for i in missing]),
                             strict=True):
            found[i] = vector
    return np.stack(found).astype(np.float32, copy=False)


def _near_duplicate(a: int, b: int, vectors: np.ndarray, texts: Sequence[str]) -> bool:
    if float(vectors[a] @ vectors[b]) > NEAR_DUPLICATE_COSINE:
        return True
    words_a, words_b = set(words(texts[a])), set(words(texts[b]))
    union = words_a | words_b
    return bool(union) and len(words_a & words_b) / len(union) > NEAR_DUPLICATE_JACCARD


def _select(scores: np.ndarray, vectors: np.ndarray, texts: Sequence[str],
            limit: int, cutoff: float, question: str | None = None) -> list[int]:
    """Up to `limit` sentences best first, within `cutoff` of the best, no two alike; given
    the question, a sentence joins only if it adds a question term the others lack."""
    order = np.argsort(-scores, kind="stable")
    floor = float(scores[order[0]]) - cutoff
    wanted = set(terms(question)) if question is not None else None
    covered: set[str] = set()
    chosen: list[int] = []
    for i in order:
        if len(chosen) == limit or float(scores[i]) < floor:
            break
        if any(_near_duplicate(i, j, vectors, texts) for j in chosen):
            continue
        if wanted is not None:
            adds = wanted.intersection(terms(texts[i])) - covered
            if chosen and not adds:
                continue  # says nothing about the question the answer does not already
            covered |= adds
        chosen.append(int(i))
        if wanted is not None and covered >= wanted:
            break  # the question is covered: more sentences only dilute the answer
    return chosen


@dataclass(frozen=True)
class Ranking:
    """The candidate sentences of the passages, scored against the question."""

    candidates: list[_Candidate]
    texts: list[str]
    vectors: np.ndarray
    similarity: np.ndarray  # cosine to the question
    keyword: np.ndarray  # keyword_scores (zeros without the question's text)
    scores: np.ndarray  # the ranking: similarity mixed with keyword overlap


def rank(question_vector: np.ndarray, passages: Sequence[Passage],
         embed: Callable[[list[str]], np.ndarray], question: str | None,
         keyword_weight: float = DEFAULT_KEYWORD_WEIGHT) -> Ranking | None:
    """The passages' sentences ranked for the question; None when there is none."""
    candidates = _candidates(passages)
    if not candidates:
        return None
    texts = [c.text for c in candidates]
    vectors = _vectors(candidates, passages, embed)
    similarity = vectors @ question_vector
    keyword = np.zeros(len(texts), dtype=np.float32)
    scores = similarity
    if question is not None:
        keyword = keyword_scores(question, texts)
        scores = (1 - keyword_weight) * similarity + keyword_weight * keyword
    return Ranking(candidates, texts, vectors, similarity, keyword, scores)


def answerability_features(question: str, ranking: Ranking,
                           passages: Sequence[Passage]) -> np.ndarray:
    return answerability.features(question, ranking.texts, ranking.similarity,
                                  ranking.keyword, ranking.scores, [p.score for p in passages])


def extractive_answer(
    question_vector: np.ndarray,
    passages: Sequence[Passage],
    embed: Callable[[list[str]], np.ndarray],
    *,
    question: str | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    min_passage_score: float = DEFAULT_MIN_PASSAGE_SCORE,
    min_answerable: float = DEFAULT_MIN_ANSWERABLE,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
    keyword_weight: float = DEFAULT_KEYWORD_WEIGHT,
    relative_cutoff: float = DEFAULT_RELATIVE_CUTOFF,
) -> Answer:
    """Picks up to `max_sentences` sentences from `passages` that answer the question.

    `question_vector` and the vectors `embed` returns must be L2-normalised, so a dot product
    is the cosine similarity; `embed` is called only for sentences without a stored vector
    (Passage.sentences). A sentence scores `(1 - keyword_weight) * similarity +
    keyword_weight * keyword overlap` with `question` (similarity alone when `question` is
    None). The answer is the best sentence, then the next best (down to `relative_cutoff`
    below it) only while each adds a question term the answer does not cover yet: the
    shortest set of sentences that covers the question. Each is followed by `[n]`.

    "I don't know" when no passage scored `min_passage_score` in retrieval (the documents are
    off topic), no sentence's similarity (`best_similarity`) reaches `min_similarity`, or,
    given the question's text, the answerability scorer (pgask.answering.answerability) puts
    the chance that the sentences answer it below `min_answerable`.
    """
    if not any(p.score >= min_passage_score for p in passages):
        return Answer(NO_ANSWER, "no_answer")
    ranking = rank(question_vector, passages, embed, question, keyword_weight)
    if ranking is None:
        return Answer(NO_ANSWER, "no_answer")
    best = float(ranking.similarity.max())
    if best < min_similarity:
        return Answer(NO_ANSWER, "no_answer", best_similarity=best)
    answerable = None
    if question is not None:
        answerable = SCORER.probability(answerability_features(question, ranking, passages))
        if answerable < min_answerable:
            return Answer(NO_ANSWER, "no_answer", best_similarity=best, answerable=answerable)

    candidates = ranking.candidates
    numbers: dict[int, int] = {}
    citations: list[Citation] = []
    parts = []
    for i in _select(ranking.scores, ranking.vectors, ranking.texts, max_sentences,
                     relative_cutoff, question):
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
    return Answer(" ".join(parts), "extractive", citations, best, answerable)
