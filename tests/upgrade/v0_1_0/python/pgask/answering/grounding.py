"""The grounding guard: does a generated answer stay within the passages it cites?

An LLM shown numbered passages is asked to cite them as [n]. check_grounding flags what it
most often gets wrong in ways a reader cannot see: citing a passage that was never shown,
leaving claims uncited, and stating facts - numbers, dates, quoted words, names - that no
cited passage contains. It is strict on those facts and blind to everything else, so a
paraphrase passes: only what can be invented outright is checked, not how it is worded.

Decisions:
- Facts are checked against all the passages the answer cites, not sentence by sentence: a
  fact cited to the wrong one of two passages is a misattribution, not an invention.
- An answer that cites nothing is flagged for that, and its facts are checked against all the
  passages, so that the problems still tell a supported answer from an invented one. The
  same holds when every citation points at a passage that does not exist.
- Numbers compare by value ("1,000" = "1000" = "1 000", "3.50" = "3.5", "1.5 million" =
  "1,500,000"); units are not checked ("42%" is supported by "42 percent"). Number words in
  the passages ("three", "tenth") support digits in the answer.
- Dates compare by the fields the answer gives: "March 1999" and "1999-03-03" are both
  supported by "March 3, 1999"; "March 4, 1999" is not.
- A name is a run of capitalised words (with "of", "de", ... inside), or an all-capitals or
  camel-case word. A capitalised word alone at the start of a sentence is not a name. A name
  is supported when the passages hold it as a phrase, or hold all its words in one sentence
  ("Duke William" from "William, Duke of Normandy"). Case, accents, possessives and plural s
  do not count.
- A quotation is supported when its words appear in that order in a passage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from pgask.answering.keywords import words
from pgask.chunking import split_sentences

__all__ = ["Grounding", "check_grounding", "is_no_answer"]


@dataclass(frozen=True)
class Grounding:
    grounded: bool
    problems: list[str] = field(default_factory=list)  # one readable sentence each
    cited: list[int] = field(default_factory=list)  # existing passage numbers cited, ascending


# --- citations ---------------------------------------------------------------------------

_DASH = "\u2013\u2014-"  # the hyphen last, so that it is no range in a class
_CITATION = re.compile(rf"\[\s*\d+(?:\s*[,;{_DASH}]\s*\d+)*\s*\]")
_CITED_ITEM = re.compile(rf"(\d+)(?:\s*[{_DASH}]\s*(\d+))?")


def _citations(answer: str, count: int) -> tuple[list[int], list[str]]:
    """The existing passage numbers the answer cites, and a problem for each bad citation."""
    cited: set[int] = set()
    problems = []
    for marker in dict.fromkeys(m.group() for m in _CITATION.finditer(answer)):
        for item in _CITED_ITEM.finditer(marker):
            first = int(item.group(1))
            last = int(item.group(2) or first)
            if last < first:
                problems.append(f"citation {marker} has a range that runs backwards")
                continue
            if first < 1 or last > count:
                shown = f"passages 1 to {count}" if count else "no passages"
                problems.append(f"citation {marker} points at a passage that does not exist "
                                f"(there were {shown})")
            cited.update(range(max(first, 1), min(last, count) + 1))
    return sorted(cited), problems


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
    plain = " ".join(_CITATION.sub(" ", text).replace("\u2019", "'").lower().split())
    plain = plain.strip("\"'\u201c\u201d ")
    words = re.sub(r"[^\w\s']+", " ", plain).split()
    if [w.replace("do not", "don't") for w in words] in (["i", "don't", "know"],
                                                          ["i", "dont", "know"]):
        return True
    if " ".join(words[:4]) == "i do not know" and len(words) == 4:
        return True
    return (bool(_REFUSAL.match(plain)) and not _CITATION.search(text)
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
_LIST_MARKER = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*\u2022])\s+")


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
    before = text[:position].rstrip().rstrip("\"'([{\u201c\u2018").rstrip()
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
        if len(run) == 1 and opening and not _strong(run[0].group()):
            continue  # a sentence's first word is capitalised whatever it is
        found.append((text[run[0].start():run[-1].end()], opening))
    return found


class _Support:
    """What the cited passages say, in the forms facts are compared in."""

    def __init__(self, passages: Iterable[str]) -> None:
        passages = list(passages)
        joined = "\n\n".join(passages)
        self.numbers = _known_numbers(joined)
        self.dates = {date for _, date in _dates(joined)[0]}
        self.phrases = [f" {' '.join(words(p))} " for p in passages]
        self.sentences = [set(words(p[start:end]))
                          for p in passages for start, end in split_sentences(p)]

    def has_phrase(self, text: str) -> bool:
        phrase = f" {' '.join(words(text))} "
        return phrase.strip() == "" or any(phrase in p for p in self.phrases)

    def has_name(self, name: str) -> bool:
        if self.has_phrase(name):
            return True
        needed = {w for w in words(name) if w not in _CONNECTORS}
        return any(needed <= sentence for sentence in self.sentences)


def _check_facts(answer: str, support: _Support, where: str) -> list[str]:
    problems = []
    quotes, rest = _quotes(answer)
    for quote in dict.fromkeys(quotes):
        if not support.has_phrase(quote):
            problems.append(f'the quotation "{quote}" is not in {where}')
    dates, rest = _dates(rest)
    for text, date in dict.fromkeys(dates):
        if not _supported_date(date, support.dates, support.numbers):
            problems.append(f'the date "{text}" is not in {where}')
    for text, value in dict.fromkeys(_numbers(rest)):
        if value not in support.numbers:
            problems.append(f'the number "{text}" is not in {where}')
    for name, opening in dict.fromkeys(_names(rest)):
        if support.has_name(name):
            continue
        # A capitalised first word may only be capitalised for opening the sentence.
        rest_of_name = name.split(None, 1)[1] if opening and " " in name else ""
        if opening and rest_of_name and support.has_name(rest_of_name):
            continue
        problems.append(f'the name "{name}" is not in {where}')
    return problems


def check_grounding(answer: str, passages: Sequence[str]) -> Grounding:
    """Checks `answer` against `passages`, where passages[i] was shown as passage [i + 1]."""
    if is_no_answer(answer):
        return Grounding(True)
    if not answer.strip():
        return Grounding(False, ["the answer is empty"])
    cited, problems = _citations(answer, len(passages))
    if not _CITATION.search(answer):
        problems.append("the answer cites no passage")
    if cited:
        where = "the cited passages " + ", ".join(f"[{n}]" for n in cited)
        support = _Support(passages[n - 1] for n in cited)
    else:
        where = "any passage"
        support = _Support(passages)
    # A citation ends what it cites like a line break: no quotation runs across one.
    claims = _CITATION.sub(lambda m: "\n" + " " * (len(m.group()) - 1), _LIST_MARKER.sub(
        lambda m: " " * len(m.group()), answer))
    problems.extend(_check_facts(claims, support, where))
    return Grounding(not problems, problems, cited)
