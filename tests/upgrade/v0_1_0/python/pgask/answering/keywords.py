"""Words of English text, normalised so that the same term written two ways compares equal.

Two levels: `words` (lower case, no accents, no possessive, no plural s) for checks that must
stay close to the text, like the grounding guard's names; `terms` (content words only, with
common suffixes stripped) for keyword scoring, where "founded" should meet "founding".
Pure: the standard library and numpy.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

# Function words and question words: they say how a question is asked, not what about.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be been before being
below between both but by can could did do does doing done down during each either else
ever every few for from further had has have having he her here hers herself him himself his
how however i if in into is it its itself just least less like many may me might more most
much must my myself name named neither no nor not of off often on once one only or other
our ours ourselves out over own per rather same shall she should since so some such than
that the their theirs them themselves then there these they this those through thus to too
under until up upon us used very was we were what whatever when where whether which while
who whom whose why will with within without would yet you your yours yourself
""".split())


def _fold(text: str) -> str:
    """Lower case without accents, one apostrophe: "Zürich" and "zurich" are one word."""
    text = text.lower()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return text


@lru_cache(maxsize=65536)  # the vocabulary of a corpus is small; its texts are not
def _singular(word: str) -> str:
    """Drops a possessive and a plural s ("Normans'", "Norman's" -> "norman"; "centuries"
    -> "century")."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word


def words(text: str) -> list[str]:
    """Every word of `text`, folded and singular."""
    return [_singular(w) for w in _WORD.findall(_fold(text))]


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix stripper for already singular words: enough for "founded", "founding"
    and "found" to meet; over-stemming is harmless as both sides are stemmed alike."""
    for suffix in ("ing", "ed", "ly", "es"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The stems of the content words of `text` (stopwords and single characters left out)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


def keyword_scores(question: str, sentences: Sequence[str]) -> np.ndarray:
    """For each sentence, the IDF-weighted share of the question's terms it contains, in 0..1.

    IDF (BM25's, log((N + 1) / (df + 0.5))) is computed over `sentences` themselves: a term
    every candidate sentence shares (the topic of the retrieved passages) tells them apart
    little better than a stopword, while a rare term the question names (a date, a person, a
    verb) is what points at the answer. A question term no sentence has weighs most, and so
    lowers every sentence's share.
    """
    wanted = set(terms(question))
    scores = np.zeros(len(sentences), dtype=np.float32)
    if not wanted or not sentences:
        return scores
    present = [wanted.intersection(terms(s)) for s in sentences]
    count = len(sentences)
    idf = {t: math.log((count + 1) / (sum(t in p for p in present) + 0.5)) for t in wanted}
    total = sum(idf.values())
    for i, found in enumerate(present):
        scores[i] = sum(idf[t] for t in found) / total
    return scores
