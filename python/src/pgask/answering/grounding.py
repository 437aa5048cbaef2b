"""The grounding guard: which passage supports each claim of a generated answer, and which
claims no passage supports.

An LLM shown numbered passages is asked to cite them as [n]; small models cite the wrong one
or none at all, and any model can state what no passage says. check_grounding splits the
answer into claims (pgask.answering.attribution), finds for each the passages that support
it, writes the [n] marks that say so (Grounding.answer), and flags the claims nothing
supports. A claim is supported by a passage when:
- every fact it states is there - numbers, dates, quoted words, names (rules below) - and
- enough of its content words are there (ATTRIBUTE_COVERAGE of them), or, where a model
  embeds the text, fewer (ATTRIBUTE_MIN_COVERAGE) with a sentence of the passage close in
  meaning (cosine >= ATTRIBUTE_SIMILARITY).
A passage the claim does not cite itself must state it in ATTRIBUTE_WINDOW consecutive
sentences (facts and words together), not anywhere in the passage. Failing every single
passage, two passages together may support it (a claim that joins two facts), each fact
standing in a cited passage or beside the claim's other words.

What is checked: that the answer is not degenerate (pgask.answering.degenerate: a repeated
sentence, the question restated, longer than its sources, text after a stop sequence); that
every claim's facts and most of its words stand in a passage shown; that the answer says
something beyond its citations and beyond the question's own words; that the passages it
rests on hold the numbers and dates the question asks about.
What is NOT checked: whether the passage says what the claim says about those words (a right
name in a wrong role, a year that belongs to someone else in the same passage, "X did not"
for "X did"), and, beyond those numbers and dates, whether the answer answers this question
rather than another one the passages also answer: those need an entailment model (or the
LLM judge of guard 'judge', pgask.answering.judge), and none
ships offline here. Code blocks are checked for their names only (SQL keywords, camel case),
not for their words: their identifiers are examples. A lead-in ending in ":" and a Markdown
heading claim nothing.

Decisions:
- A claim whose marks point at a passage that does not support it, or at none shown, or
  that has no marks, gets the marks of the passages that do (re-attributed, not withheld):
  the reader gets the right source, and the answer is not lost for a citation slip. The
  LLM's marks are kept where they are right.
- Numbers compare by value ("1,000" = "1000" = "1 000", "3.50" = "3.5", "1.5 million" =
  "1,500,000"); units are not checked ("42%" is supported by "42 percent"). Number words in
  the passages ("three", "tenth") support digits in the answer.
- Dates compare by the fields the answer gives: "March 1999" and "1999-03-03" are both
  supported by "March 3, 1999"; "March 4, 1999" is not.
- A name is a run of capitalised words (with "of", "de", ... inside), or an all-capitals or
  camel-case word. A capitalised word alone at the start of a sentence is not a name, and a
  function word opening a sentence ("The Ming") is not part of one. A name is supported when
  the passage holds it as a phrase, or holds all its words in one sentence ("Duke William"
  from "William, Duke of Normandy"). Case, accents, possessives and plural s do not count,
  nor hyphens and spaces inside a word ("BTree" is "B-tree").
- A quotation is supported when its words appear in that order in a passage.
- The thresholds were checked on 73 recorded replies of Qwen2.5-Coder-1.5B (110 SQuAD 2.0
  questions and the demo manual's three; docs/measured.md), still few: re-tune them with
  scripts/guard_compare.py (`score --set NAME=VALUE`) on a larger recording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

import numpy as np

from pgask.answering import degenerate
from pgask.answering.attribution import (
    CITATION,
    ClaimSpan,
    remark,
    split_claims,
)
from pgask.answering.keywords import STOPWORDS, terms, words
from pgask.text import split_sentences

__all__ = ["Claim", "Grounding", "check_grounding", "is_no_answer"]

# A claim's share of content words a passage must hold to support it on words alone, and
# the lower share that suffices with a passage sentence close in meaning (cosine, MiniLM).
ATTRIBUTE_COVERAGE = 0.5
ATTRIBUTE_MIN_COVERAGE = 0.2
ATTRIBUTE_SIMILARITY = 0.35
# A passage the claim does not cite itself supports it only when this many consecutive
# sentences of it hold the claim's facts and words: a model's wrong [n] is re-attributed to
# where the fact is stated, not to a passage where its words lie scattered ("the Roman
# language" from "Gallo-Romance language" in one sentence and "Roman administrative
# structure" in another). None: anywhere in the passage, as for the passages it cites.
ATTRIBUTE_WINDOW: int | None = 2
# The most passages that may support one claim together (a claim that joins two facts).
ATTRIBUTE_JOIN_MAX = 2

# Whether the numbers and dates the question asks about must stand in a passage the answer
# rests on ("Who ruled in the 9th century?" answered from a passage on the 10th). On SQuAD 2.0
# part A's own contexts this flags 9 of 1,278 answerable questions and 54 of 1,527
# unanswerable ones; with the question's names too it flagged 113 answerable ones (spelling,
# "European" for "Europe"), so names are left out.
CHECK_QUESTION_FACTS = True

Embed = Callable[[list[str]], np.ndarray]  # L2-normalised rows, one per text


@dataclass(frozen=True)
class Claim:
    text: str  # as written, without marks
    cited: list[int]  # the passage numbers the LLM cited for it
    sources: list[int]  # the passages that support it (its marks in Grounding.answer)
    supported: bool
    reason: str | None = None  # why not, when not
    # "statement"; "code" or "lead-in" are checked for their names only (and not judged)
    kind: str = "statement"


@dataclass(frozen=True)
class Grounding:
    grounded: bool
    problems: list[str] = field(default_factory=list)  # one readable sentence each
    cited: list[int] = field(default_factory=list)  # passages the shown answer cites, ascending
    claims: list[Claim] = field(default_factory=list)
    answer: str | None = None  # the answer with its marks corrected; None: as given


# --- refusals ----------------------------------------------------------------------------

_REFUSAL = re.compile(
    r"((sorry|unfortunately)[,.!]?\s*)?"
    r"(i\s+(do\s+not|don'?t|cannot|can'?t)\s+(know|tell|say|answer|find)"
    r"|i'?m\s+not\s+sure|i\s+am\s+not\s+sure|unknown\b|no\s+answer\b"
    r"|(the|these|this)\s+(provided\s+|given\s+|retrieved\s+)?(passages?|documents?|context|"
    r"sources?|texts?)\s+(do|does)\s*(not|n'?t)\s+(say|mention|contain|answer|state|specify"
    r"|include|provide|cover)"
    r"|there\s+is\s+(no|not\s+enough)\s+information)")


def is_no_answer(text: str) -> bool:
    """True for an answer that declines: exactly "I don't know" (any case, punctuation,
    quotes or citation markers around it), or a short reply (at most 16 words) that starts
    with a refusal ("I don't know; the passages do not say.", "The passages do not mention
    it.") and cites nothing. It claims no fact, so there is nothing to ground; a longer reply
    that goes on to say something is an answer and is checked."""
    plain = " ".join(CITATION.sub(" ", text).replace("\u2019", "'").lower().split())
    plain = plain.strip("\"'\u201c\u201d ")
    words = re.sub(r"[^\w\s']+", " ", plain).split()
    if [w.replace("do not", "don't") for w in words] in (["i", "don't", "know"],
                                                          ["i", "dont", "know"]):
        return True
    if " ".join(words[:4]) == "i do not know" and len(words) == 4:
        return True
    return (bool(_REFUSAL.match(plain)) and not CITATION.search(text)
            and len(words) <= 16)


# --- facts -------------------------------------------------------------------------------

_MONTHS = {name: number for number, names in enumerate((
    ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
    ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
    ("october", "oct"), ("november", "nov"), ("december", "dec")), 1) for name in names}
_MONTH = r"(?P<month>(?:" + "|".join(
    sorted((n.capitalize() for n in _MONTHS), key=len, reverse=True)) + r")\b\.?)"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATES = [re.compile(p) for p in (
    r"\b(?P<year>\d{4})-(?P<month>[01]?\d)-(?P<day>[0-3]?\d)\b",
    rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b",
    rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b",
    rf"\b{_MONTH},?\s+{_YEAR}\b",
)]
Date = tuple[int | None, int | None, int | None]  # year, month, day: None where not given

# Thousands separators: a comma, or the no-break and thin spaces typeset for it (a plain
# space is not one: "in 2011 500 people" holds two numbers).
_SEPARATOR = ",\u00a0\u202f\u2009"
_NUMBER = re.compile(
    rf"(?<![\w.])(\d{{1,3}}(?:[{_SEPARATOR}]\d{{3}})+(?![\d])|\d+)(\.\d+)?"
    r"(?:\s*(?P<scale>thousand|million|billion|trillion)\b)?", re.IGNORECASE)
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_NUMBER_WORDS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())} | {
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "dozen": 12} | {word: value for value, word in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth".split(), 1)}

_QUOTES = [re.compile(p) for p in (
    r'"([^"\n]+)"', "\u201c([^\u201d\n]+)\u201d", "\u00ab([^\u00bb\n]+)\u00bb",
    r"\u2018(.+?)\u2019(?!\w)", r"(?<!\w)'(.+?)'(?!\w)")]

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")
# Lower-case words that belong inside a name: "University of Paris", "Leonardo da Vinci".
_CONNECTORS = frozenset("of the de da di del della der van von la le du y al bin".split())
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'd", "I'll", "OK"})
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs fig e.g i.e cf etc".split())


def _blank(text: str, start: int, end: int) -> str:
    """Removes a span already checked, keeping offsets and the sentence structure around it."""
    return text[:start] + " " * (end - start) + text[end:]


def _dates(text: str) -> tuple[list[tuple[str, Date]], str]:
    """The dates in `text` and the text with them blanked out."""
    found = []
    for pattern in _DATES:
        for match in pattern.finditer(text):
            parts = match.groupdict()
            month = parts["month"]
            month_number = int(month) if month.isdigit() else _MONTHS[month.rstrip(".").lower()]
            day = int(parts["day"]) if parts.get("day") else None
            if not 1 <= month_number <= 12 or (day is not None and not 1 <= day <= 31):
                continue
            year = int(parts["year"]) if parts.get("year") else None
            found.append((match.group(), (year, month_number, day)))
            text = _blank(text, *match.span())
    return found, text


def _supported_date(date: Date, known: set[Date], numbers: set[Decimal]) -> bool:
    """Every field the answer gives matches one passage date; a year that date leaves out
    may stand elsewhere in the passages ("In 1999 ... on March 3")."""
    year, month, day = date
    return any((year is None or year == theirs[0]
                or (theirs[0] is None and Decimal(year) in numbers))
               and month == theirs[1] and day in (None, theirs[2])
               for theirs in known)


def _number_values(match: re.Match) -> tuple[Decimal, Decimal]:
    """The value as written and as scaled: "1.5 million" is (1.5, 1500000)."""
    digits = re.sub(rf"[{_SEPARATOR}]", "", match.group(1)) + (match.group(2) or "")
    value = Decimal(digits)
    scale = match.group("scale")
    return value, value * _SCALES[scale.lower()] if scale else value


def _numbers(text: str) -> list[tuple[str, Decimal]]:
    return [(m.group().strip(), _number_values(m)[1]) for m in _NUMBER.finditer(text)]


def _known_numbers(text: str) -> set[Decimal]:
    known = {value for m in _NUMBER.finditer(text) for value in _number_values(m)}
    known.update(Decimal(_NUMBER_WORDS[w]) for w in words(text) if w in _NUMBER_WORDS)
    return known


def _quotes(text: str) -> tuple[list[str], str]:
    found = []
    for pattern in _QUOTES:
        for match in pattern.finditer(text):
            if words(match.group(1)):
                found.append(match.group(1).strip())
            text = _blank(text, *match.span())
    return found, text


def _sentence_start(text: str, position: int) -> bool:
    """Whether the word at `position` opens a sentence (or a line, or a clause after ':')."""
    # Quotes, brackets and Markdown ("**Note:**", "### Steps") before a first word.
    before = text[:position].rstrip().rstrip("\"'([{\u201c\u2018*_#>`").rstrip()
    if not before or before[-1] in "!?:\u2026":
        return True
    if before[-1] != ".":
        return "\n" in text[len(before):position]
    previous = before[:-1].rsplit(None, 1)[-1].lower() if before[:-1].strip() else ""
    return not (previous in _ABBREVIATIONS or (len(previous) == 1 and previous.isalpha()))


def _strong(word: str) -> bool:
    """An acronym or a camel-case word is a name wherever it stands ("VACUUM", "PostgreSQL")."""
    letters = [ch for ch in word if ch.isalpha()]
    return len(letters) > 1 and any(ch.isupper() for ch in letters[1:])


def _names(text: str) -> list[tuple[str, bool]]:
    """Runs of capitalised words, each with whether it opens a sentence."""
    runs: list[list[re.Match]] = []
    for match in _TOKEN.finditer(text):
        word = match.group()
        capitalised = word[0].isupper() and word not in _NOT_NAMES
        if runs and text[runs[-1][-1].end():match.start()].isspace() and (
                capitalised or word in _CONNECTORS):
            runs[-1].append(match)
        elif capitalised:
            runs.append([match])
    found = []
    for run in runs:
        while not run[-1].group()[0].isupper():
            run.pop()  # "the" after "University of Paris" belongs to what follows
        opening = _sentence_start(text, run[0].start())
        if opening and len(run) > 1 and run[0].group().lower() in STOPWORDS:
            run = run[1:]  # "The Ming": the article is capitalised for opening the sentence
            while not run[0].group()[0].isupper():
                run.pop(0)
            opening = False
        if len(run) == 1 and opening and not _strong(run[0].group()):
            continue  # a sentence's first word is capitalised whatever it is
        found.append((text[run[0].start():run[-1].end()], opening))
    return found


class _Support:
    """What the cited passages say, in the forms facts are compared in."""

    def __init__(self, passages: Iterable[str]) -> None:
        passages = list(passages)
        self.texts = passages
        joined = "\n\n".join(passages)
        self.numbers = _known_numbers(joined)
        self.dates = {date for _, date in _dates(joined)[0]}
        self.phrases = [f" {' '.join(words(p))} " for p in passages]
        # Each sentence's words, and runs of two and three of them written as one word:
        # "BTree" is "B-tree", "PostGIS" "Post GIS".
        self.sentences = [_with_joined(words(p[start:end]))
                          for p in passages for start, end in split_sentences(p)]

    def has_phrase(self, text: str) -> bool:
        phrase = f" {' '.join(words(text))} "
        return phrase.strip() == "" or any(phrase in p for p in self.phrases)

    def has_name(self, name: str) -> bool:
        if self.has_phrase(name):
            return True
        needed = {w for w in words(name) if w not in _CONNECTORS}
        return any(needed <= sentence for sentence in self.sentences)


def _with_joined(found: list[str]) -> set[str]:
    return set(found) | {"".join(found[i:i + n]) for n in (2, 3)
                         for i in range(len(found) - n + 1)}


Facts = tuple[list[str], list[tuple[str, Date]], list[tuple[str, Decimal]],
              list[tuple[str, bool]]]  # quotes, dates, numbers, names (with "opens a sentence")


def _facts(text: str) -> Facts:
    """The facts `text` states; each kind is blanked once found, so "March 3, 1999" is one
    date and not also two numbers."""
    quotes, rest = _quotes(text)
    dates, rest = _dates(rest)
    return (list(dict.fromkeys(quotes)), list(dict.fromkeys(dates)),
            list(dict.fromkeys(_numbers(rest))), list(dict.fromkeys(_names(rest))))


def _missing(facts: Facts, support: _Support) -> list[str]:
    """The facts `support` does not hold, each as 'the number "42"'."""
    quotes, dates, numbers, names = facts
    missing = [f'the quotation "{q}"' for q in quotes if not support.has_phrase(q)]
    missing += [f'the date "{text}"' for text, date in dates
                if not _supported_date(date, support.dates, support.numbers)]
    missing += [f'the number "{text}"' for text, value in numbers
                if value not in support.numbers]
    for name, opening in names:
        if support.has_name(name):
            continue
        # A capitalised first word may only be capitalised for opening the sentence.
        rest_of_name = name.split(None, 1)[1] if opening and " " in name else ""
        if not (rest_of_name and support.has_name(rest_of_name)):
            missing.append(f'the name "{name}"')
    return missing


# --- claims ------------------------------------------------------------------------------


def _content(text: str) -> set[str]:
    """A text's content words, stemmed; digits are left to the number checks."""
    return {t for t in terms(text) if not t.isdigit()}


def _similarities(embed: Embed, claims: list[str], passages: Sequence[str]) -> np.ndarray:
    """(claims x passages): each claim's cosine with the closest sentence of each passage."""
    sentences, owner = [], []
    for i, passage in enumerate(passages):
        for start, end in split_sentences(passage):
            sentences.append(passage[start:end])
            owner.append(i)
    out = np.zeros((len(claims), len(passages)), dtype=np.float32)
    if not claims or not sentences:
        return out
    vectors = embed(list(claims) + sentences)
    cosine = vectors[:len(claims)] @ vectors[len(claims):].T
    for column, i in enumerate(owner):
        out[:, i] = np.maximum(out[:, i], cosine[:, column])
    return out


@dataclass
class _Passages:
    """The passages shown, in the forms claims are compared in."""

    texts: Sequence[str]
    supports: list[_Support]
    words: list[set[str]]

    @classmethod
    def of(cls, texts: Sequence[str]) -> _Passages:
        return cls(texts, [_Support([t]) for t in texts], [_content(t) for t in texts])

    @cached_property
    def windows(self) -> list[list[tuple[set[str], _Support]]]:
        """Each passage's runs of ATTRIBUTE_WINDOW sentences, read only when a claim is
        weighed against a passage it does not cite."""
        return [_windows(t) for t in self.texts]


def _windows(text: str) -> list[tuple[set[str], _Support]]:
    if ATTRIBUTE_WINDOW is None:
        return []
    spans = split_sentences(text) or [(0, len(text))]
    runs = [text[spans[i][0]:spans[min(i + ATTRIBUTE_WINDOW, len(spans)) - 1][1]]
            for i in range(max(1, len(spans) - ATTRIBUTE_WINDOW + 1))]
    return [(_content(run), _Support([run])) for run in runs]


def _share(wanted: set[str], found: set[str]) -> float:
    """The share of a claim's content words that `found` holds (1.0 for a claim without any)."""
    return len(wanted & found) / len(wanted) if wanted else 1.0


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def _judge(claim: ClaimSpan, shown: _Passages, similarity: np.ndarray | None
           ) -> tuple[list[int], str | None]:
    """The passage numbers that support `claim` (ascending), or [] and the reason none does."""
    facts = _facts(claim.raw)
    if claim.code or claim.intro:  # checked for names only: its words are examples
        missing = _missing(facts, _Support(shown.texts))
        return [], _not_in(missing, "any passage") if missing else None
    wanted = _content(claim.text)
    count = len(shown.texts)
    coverage = [_share(wanted, w) for w in shown.words]
    close = [similarity is not None and similarity[i] >= ATTRIBUTE_SIMILARITY
             for i in range(count)]

    def enough(share: float, i: int) -> bool:
        return share >= ATTRIBUTE_COVERAGE or (close[i] and share >= ATTRIBUTE_MIN_COVERAGE)

    def stated(i: int) -> bool:
        if ATTRIBUTE_WINDOW is None or i + 1 in claim.marks:
            return True
        return any(enough(_share(wanted, run), i)
                   and not _missing(facts, support) for run, support in shown.windows[i])

    supports = [i + 1 for i in range(count)
                if enough(coverage[i], i) and not _missing(facts, shown.supports[i])
                and stated(i)]
    if supports:
        cited = [n for n in claim.marks if n in supports]
        if cited:
            return sorted(cited), None
        score = [coverage[i] + (similarity[i] if similarity is not None else 0.0)
                 for i in range(count)]
        return [max(supports, key=lambda n: score[n - 1])], None
    # No passage alone: the fewest best passages that hold its facts and words together.
    order = sorted(range(count), key=lambda i: -coverage[i])
    for size in range(2, ATTRIBUTE_JOIN_MAX + 1):
        chosen = order[:size]
        if len(chosen) < size:
            break
        together = set().union(*(shown.words[i] for i in chosen))
        if _share(wanted, together) >= ATTRIBUTE_COVERAGE and not _missing(
                facts, _joined(shown, chosen, wanted, claim.marks)):
            return sorted(i + 1 for i in chosen), None
    missing = _missing(facts, _Support(shown.texts))
    if missing:
        return [], _not_in(missing, "any passage")
    closest = max(range(count), key=lambda i: coverage[i]) if count else None
    if closest is not None and coverage[closest] >= ATTRIBUTE_MIN_COVERAGE:
        missing = _missing(facts, shown.supports[closest])
        if missing:
            return [], _not_in(missing, f"[{closest + 1}], the passage with most of its words")
    best = coverage[closest] if closest is not None else 0.0
    return [], f"at most {best:.0%} of its words are in a passage, and none says it in other words"


def _joined(shown: _Passages, chosen: list[int], wanted: set[str], marks: list[int]
            ) -> _Support:
    """What passages joined to support one claim say: those the claim cites whole; of the
    others, with ATTRIBUTE_WINDOW, only their runs of sentences that hold two or more of the
    claim's words, so a name found elsewhere in a passage, about something else ("Roman
    Catholic" for "the Roman language"), does not complete a claim that another passage
    holds the rest of."""
    if ATTRIBUTE_WINDOW is None:
        return _Support(shown.texts[i] for i in chosen)
    needed = min(2, len(wanted))
    texts = [shown.texts[i] for i in chosen if i + 1 in marks]
    texts += [text for i in chosen if i + 1 not in marks
              for run, support in shown.windows[i] if len(run & wanted) >= needed
              for text in support.texts]
    return _Support(texts)


def _not_in(missing: list[str], where: str) -> str:
    return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in {where}"


def check_grounding(answer: str, passages: Sequence[str], *, question: str | None = None,
                    embed: Embed | None = None) -> Grounding:
    """Checks `answer` against `passages`, where passages[i] was shown as passage [i + 1]:
    every claim gets the marks of the passages that support it, and each claim no passage
    supports is a problem. `question` lets an answer that only restates it be told apart;
    `embed` (L2-normalised sentence vectors) lets a paraphrase count as support."""
    if is_no_answer(answer):
        return Grounding(True)
    if not answer.strip():
        return Grounding(False, ["the answer is empty"])
    claims = split_claims(answer)
    if not claims:
        return Grounding(False, ["the answer says nothing beyond its citations"])
    said = set().union(*(set(terms(c.text)) for c in claims))
    if question is not None and said <= set(terms(question)):
        return Grounding(False, ["the answer only restates the question"])
    shown = _Passages.of(passages)
    judged = [c for c in claims if not (c.code or c.intro)]
    similarity = (_similarities(embed, [c.text for c in judged], passages)
                  if embed is not None and passages else None)
    rows = {id(c): similarity[i] for i, c in enumerate(judged)} if similarity is not None \
        else {}
    results = []
    # Degenerate answers (a loop, an echo, a reply past its turn), named, found without a model.
    problems = degenerate.problems(answer, passages, question)
    for claim in claims:
        sources, reason = _judge(claim, shown, rows.get(id(claim)))
        supported = reason is None
        kind = "code" if claim.code else "lead-in" if claim.intro else "statement"
        results.append(Claim(claim.text, claim.marks, sources, supported, reason, kind))
        if not supported:
            problems.append(f'the claim "{_short(claim.text)}" is not supported: {reason}')
    if question is not None and CHECK_QUESTION_FACTS and all(r.supported for r in results):
        sources = sorted({n for r in results for n in r.sources})
        if sources:
            _, dates, numbers, _ = _facts(CITATION.sub(" ", question))
            missing = _missing(([], dates, numbers, []),
                               _Support(passages[n - 1] for n in sources))
            if missing:
                where = ", ".join(f"[{n}]" for n in sources)
                asked = [f"{fact} of the question" for fact in missing]
                problems.append(f"the answer may be to another question: "
                                f"{_not_in(asked, where)}, which the answer rests on")
    marked = remark(answer, claims, [r.sources if r.supported else None for r in results])
    cited = set()
    for claim, result in zip(claims, results, strict=True):
        cited.update(result.sources if result.supported else
                     (n for n in claim.marks if 1 <= n <= len(passages)))
    return Grounding(not problems, problems, sorted(cited), results,
                     None if marked == answer.strip() else marked)
