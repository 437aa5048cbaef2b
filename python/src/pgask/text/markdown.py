"""Markdown structure: headings, fenced code, tables and text blocks, grouped in sections.

Enough of CommonMark for chunking and titles: ATX and setext headings, ``` and ~~~ fences,
pipe tables, paragraphs and lists. Pure: the standard library only.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Block(NamedTuple):
    start: int
    end: int
    kind: str  # "heading", "code" (a fenced block), "table" or "text"
    level: int = 0  # headings: 1-6
    title: str = ""  # headings: the heading text


class Section(NamedTuple):
    path: tuple[str, ...]  # the titles of the enclosing headings, outermost first
    blocks: list[Block]


_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|(?=\s*$))(.*?)(?:[ \t]+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of the ATX and setext headings of ``text``, outside code fences."""
    return [(b.level, b.title) for b in _markdown_blocks(text) if b.kind == "heading"]


def _markdown_blocks(text: str) -> list[Block]:
    """Headings, fenced code blocks, tables and runs of text lines, in document order."""
    blocks: list[Block] = []
    run: list[tuple[int, str]] = []  # the current run of non-blank text lines: (offset, line)
    fence: tuple[str, int] | None = None  # the open fence's marker and offset

    def end_run() -> None:
        if run:
            blocks.append(_text_block(run))
            run.clear()

    pos = 0
    for line in text.split("\n"):
        start, end, pos = pos, pos + len(line), pos + len(line) + 1
        if fence is not None:
            if _closes_fence(line, fence[0]):
                blocks.append(Block(fence[1], end, "code"))
                fence = None
        elif opening := _FENCE_OPEN.match(line):
            end_run()
            fence = (opening.group(1), start)
        elif heading := _ATX_HEADING.match(line):
            end_run()
            blocks.append(Block(start, end, "heading", len(heading.group(1)),
                                 heading.group(2).strip()))
        elif _is_setext_underline(line, run):
            (title_start, title), = run
            run.clear()
            level = 1 if line.strip()[0] == "=" else 2
            blocks.append(Block(title_start, end, "heading", level, title.strip()))
        elif not line.strip():
            end_run()
        else:
            run.append((start, line))
    end_run()
    if fence is not None:  # an unclosed fence runs to the end of the document
        blocks.append(Block(fence[1], len(text), "code"))
    return blocks


def _closes_fence(line: str, marker: str) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return (indent <= 3 and len(stripped) >= len(marker)
            and stripped == marker[0] * len(stripped))


def _is_setext_underline(line: str, run: list[tuple[int, str]]) -> bool:
    # Only a one-line paragraph is taken as a setext title; "- item\n---" is a list and a rule.
    return (len(run) == 1 and _SETEXT_UNDERLINE.match(line) is not None
            and not _LIST_ITEM.match(run[0][1]))


def _text_block(run: list[tuple[int, str]]) -> Block:
    start, end = run[0][0], run[-1][0] + len(run[-1][1])
    is_table = len(run) >= 2 and all("|" in line for _, line in run)
    return Block(start, end, "table" if is_table else "text")


def markdown_sections(text: str) -> list[Section]:
    """The blocks grouped under their headings, with each section's heading path."""
    sections = [Section((), [])]
    open_headings: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    for block in _markdown_blocks(text):
        if block.kind == "heading":
            while open_headings and open_headings[-1][0] >= block.level:
                open_headings.pop()
            open_headings.append((block.level, block.title))
            sections.append(Section(tuple(t for _, t in open_headings if t), []))
        sections[-1].blocks.append(block)
    return _merge_bare_headings([s for s in sections if s.blocks])


def _merge_bare_headings(sections: list[Section]) -> list[Section]:
    """Sections that are only a heading join the next section, so no chunk is just a title."""
    merged: list[Section] = []
    waiting: list[Block] = []
    for i, section in enumerate(sections):
        bare = all(b.kind == "heading" for b in section.blocks)
        if bare and i + 1 < len(sections):
            waiting.extend(section.blocks)
            continue
        merged.append(Section(section.path, waiting + section.blocks))
        waiting = []
    return merged
