"""The claims of a generated answer, the [n] marks each one carries, and rewriting those marks.

A claim is a sentence, or a clause of one where a sentence joins independent facts (after a
semicolon, or after ", and" / ", but" when a new subject follows). Marks belong to the claim
they stand in or right after ("... in 1066 [2]. Then ..." and "... in 1066. [2] Then ..."
both cite [2] for the first sentence); a clause without marks of its own takes the marks
that close its sentence, so one citation at the end of a sentence covers each of its
clauses. A sentence that only points at the passages ("This is stated in [1].") is no
claim: its marks go to the claim before it when that one has none. A fenced code block is one
claim. Pure text: which passages support a claim is decided by pgask.answering.grounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DASH = "\u2013\u2014-"  # the hyphen last, so that it is no range in a class
CITATION = re.compile(rf"\[\s*\d+(?:\s*[,;{_DASH}]\s*\d+)*\s*\]")
_CITED_ITEM = re.compile(rf"(\d+)(?:\s*[{_DASH}]\s*(\d+))?")
LIST_MARKER = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*\u2022])\s+")
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs fig e.g i.e cf etc no".split())
# Where a sentence may end: punctuation (closing quotes and brackets with it), a semicolon
# (a clause), a line break; the boundary is checked in _ends_here.
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*|;|\n")
# A sentence made of these words only points at the passages ("This is stated in [1].",
# "This information is found in passage [2]."): it claims nothing, and its marks cite the
# claim before it.
_POINTER_WORDS = frozenset("""
a above according an are as below cited context described document documents explained
found from given in information is it mentioned on passage passages per provided reference
said says see shown source sources state stated states text the this title to was which
""".split())
# ", and it ...", ", but the ...": a clause with its own subject is a claim of its own.
_CLAUSE = re.compile(r",\s+(?=(?:and|but|while|whereas)\s+(?:it|he|she|they|this|these|those"
                     r"|its|his|her|their|the|a|an|there)\b)", re.IGNORECASE)


@dataclass
class ClaimSpan:
    start: int  # the claim's span in the answer, its own marks included
    end: int
    text: str  # the claim without marks, single-spaced
    marks: list[int]  # passage numbers it cites (its own, or those closing its sentence)
    own: bool  # whether the marks stand in the claim's span
    code: bool = False  # a fenced code block
    # The claim as written, marks blanked (a mark ends a quotation like a line break): what
    # facts are read from, with the spaces that separate thousands kept.
    raw: str = ""

    @property
    def intro(self) -> bool:
        """A lead-in to what follows ("Run this:", "**Example:**") or a Markdown heading: it
        claims nothing by itself."""
        return self.text.rstrip("*_ ").endswith(":") or self.text.startswith("#")


def cited_numbers(marker: str) -> list[tuple[int, int]]:
    """The (first, last) ranges a marker cites: "[1, 3-4]" -> [(1, 1), (3, 4)]."""
    return [(int(m.group(1)), int(m.group(2) or m.group(1)))
            for m in _CITED_ITEM.finditer(marker)]


def _marks(text: str) -> list[int]:
    numbers: list[int] = []
    for marker in CITATION.finditer(text):
        for first, last in cited_numbers(marker.group()):
            numbers.extend(range(first, min(last, first + 50) + 1))
    return list(dict.fromkeys(numbers))


def _ends_here(text: str, match: re.Match) -> int | None:
    """The end of the sentence (marks that follow included) if `match` ends one, else None."""
    end = match.end()
    while True:  # marks right after the punctuation belong to the sentence it closes
        following = CITATION.match(text, end + len(text[end:]) - len(text[end:].lstrip(" \t")))
        if not following:
            break
        end = following.end()
    if match.group() in (";", "\n"):
        return end
    rest = text[end:]
    if rest and not rest[0].isspace():
        return None  # "3.5", "e.g.the", "pgask.answering"
    upcoming = rest.lstrip()
    if upcoming and upcoming[0].islower():
        return None  # "approx. three", an abbreviation we do not know
    before = text[:match.start()].rsplit(None, 1)
    previous = before[-1].lower() if before else ""
    if match.group().startswith(".") and (previous in _ABBREVIATIONS
                                          or (len(previous) == 1 and previous.isalpha())):
        return None
    return end


def _pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence and clause spans of text[start:end], trimmed, marks kept with their claim."""
    spans = []
    position = start
    for match in _END.finditer(text, start, end):
        if match.start() < position:
            continue
        stop = _ends_here(text[:end], match)
        if stop is not None:
            spans.append((position, stop))
            position = stop
    spans.append((position, end))
    clauses = []
    for first, last in spans:
        cut = first
        for match in _CLAUSE.finditer(text, first, last):
            clauses.append((cut, match.start() + 1))
            cut = match.end()
        clauses.append((cut, last))
    trimmed = []
    for first, last in clauses:
        piece = text[first:last]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trimmed.append((first + lead, first + len(piece.rstrip())))
    return trimmed


def split_claims(answer: str) -> list[ClaimSpan]:
    """The claims of `answer` in order. Pieces with no word of their own (a list number, a
    lone citation) are not claims; a lone citation goes to the claim before it."""
    # List markers are blanked, not removed, so that spans stay offsets into the answer.
    text = LIST_MARKER.sub(lambda m: " " * len(m.group()), answer)
    regions: list[tuple[int, int, bool]] = []
    position = 0
    for fence in _FENCE.finditer(text):
        regions.append((position, fence.start(), False))
        regions.append((fence.start(), fence.end(), True))
        position = fence.end()
    regions.append((position, len(text), False))
    claims: list[ClaimSpan] = []
    for first, last, code in regions:
        spans = [(first, last)] if code and text[first:last].strip() else (
            [] if code else _pieces(text, first, last))
        for start, end in spans:
            piece = text[start:end]
            plain = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(CITATION.sub(" ", piece).split()))
            marks = _marks(piece)
            if not re.search(r"[^\W_]", plain):
                if claims and marks and not claims[-1].code:  # "... end.\n[2]"
                    claims[-1].marks = list(dict.fromkeys(claims[-1].marks + marks))
                    claims[-1].own = True
                    claims[-1].end = end
                continue
            if not code and _points_only(plain):  # "This is stated in [1]."
                if claims and marks and not claims[-1].code and not claims[-1].own:
                    claims[-1].marks = list(marks)
                continue
            raw = CITATION.sub(lambda m: "\n" + " " * (len(m.group()) - 1), piece)
            claims.append(ClaimSpan(start, end, plain, marks, bool(marks), code, raw))
    # A clause without marks takes those that close its sentence: the next claim's, when
    # that claim continues the same sentence (no sentence end between them).
    for i in range(len(claims) - 2, -1, -1):
        claim, following = claims[i], claims[i + 1]
        between = text[claim.start:claim.end].rstrip()
        if (not claim.own and not claim.code and following.marks and not following.code
                and (between.endswith((",", ";")))):
            claim.marks = list(following.marks)
    return claims


def _points_only(plain: str) -> bool:
    found = re.findall(r"[^\W\d_]+", plain.lower())
    return bool(found) and all(w in _POINTER_WORDS for w in found)


def remark(answer: str, claims: list[ClaimSpan], sources: list[list[int] | None]) -> str:
    """`answer` with the marks of each claim whose sources differ from its marks replaced:
    the claim's own marks are removed and its sources written where its text ends (before
    its closing punctuation). None keeps a claim as it is (an unsupported claim keeps what
    it cited, so the reader sees what was claimed and where)."""
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in answer offsets
    rewritten = [False] * len(claims)
    for i in range(len(claims) - 1, -1, -1):  # backwards: a clause's marks may be the next's
        claim, wanted = claims[i], sources[i]
        if wanted is None or claim.code or claim.intro:
            continue
        # A clause that takes the marks closing its sentence keeps them unless they change.
        inherited = (not claim.own and claim.marks and i + 1 < len(claims)
                     and not rewritten[i + 1])
        if sorted(wanted) == sorted(claim.marks) and (claim.own or inherited
                                                      or not claim.marks):
            continue
        if inherited and wanted and set(wanted) <= set(claim.marks):
            continue
        rewritten[i] = True
        piece = answer[claim.start:claim.end]
        for marker in CITATION.finditer(piece):
            start, end = claim.start + marker.start(), claim.start + marker.end()
            while start > claim.start and answer[start - 1] in " \t":
                start -= 1  # "fact [1]." loses " [1]"
            edits.append((start, end, ""))
        stripped = CITATION.sub("", piece).rstrip()
        closing = len(stripped) - len(stripped.rstrip(".!?;:,\u2026\"'\u201d\u2019"))
        # Where the text ends: before closing punctuation, after any quote it closes.
        where = claim.start + _offset_in(piece, len(stripped) - closing)
        if wanted:
            edits.append((where, where, " " + "".join(f"[{n}]" for n in sorted(wanted))))
    out = answer
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + replacement + out[end:]
    return out.strip()


def _offset_in(piece: str, plain_length: int) -> int:
    """The offset in `piece` of the character at `plain_length` in piece with its marks
    removed: where to write marks in the original text."""
    position = 0
    kept = 0
    for marker in CITATION.finditer(piece):
        if kept + (marker.start() - position) >= plain_length:
            break
        kept += marker.start() - position
        position = marker.end()
    offset = position + (plain_length - kept)
    while offset > 0 and piece[offset - 1] in " \t":
        offset -= 1
    return offset
