"""Query rewriting with an LLM before retrieval, for rag.answer's options hyde and multi_step.

hyde: the LLM writes a passage that would answer the question (a "hypothetical document");
its embedding, closer to answering passages than the question's, drives the vector search
(keyword search keeps the question's own words). multi_step: the LLM splits the question
into simpler ones; each is retrieved for, and the answer comes from the union.

Both cost an extra LLM call per question and could not be measured offline (no LLM worth
measuring runs here): they are off by default. This module only builds the messages and reads
the replies; pgask.answering.pipeline makes the calls. Pure: the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_PARTS = 3

HYDE_SYSTEM = (
    "Write a short passage, as it could appear in technical documentation, that answers the "
    "user's question. Write only the passage, at most five sentences, no preamble.")
DECOMPOSE_SYSTEM = (
    f"Split the user's question into at most {MAX_PARTS} simpler questions that can each be "
    "answered by one passage of the documentation. Write one question per line and nothing "
    "else. If the question is already simple, write it back unchanged.")

# "1. ", "2) ", "- ", "* ", "Q1: " in front of a listed question.
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\(?\d+[.):]|q\d+[.):]?)\s*", re.IGNORECASE)


_AFTER_QUESTION = re.compile(r"(?<=\?)\s+")


def hyde_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": HYDE_SYSTEM}, {"role": "user", "content": question}]


def decompose_messages(question: str) -> list[dict]:
    return [{"role": "system", "content": DECOMPOSE_SYSTEM},
            {"role": "user", "content": question}]


def parse_parts(reply: str, question: str) -> list[str]:
    """The sub-questions of the LLM's reply: one per non-empty line (or per "?" where a model
    put several on one line), list marks removed, no repeats (nor the question itself), at
    most MAX_PARTS. The reply is untrusted text: it only becomes search queries."""
    parts: list[str] = []
    seen = {question.strip().lower()}
    for line in (q for lines in reply.splitlines() for q in _AFTER_QUESTION.split(lines)):
        part = " ".join(_LIST_MARK.sub("", line).split())
        if len(part) < 3 or part.lower() in seen:
            continue
        seen.add(part.lower())
        parts.append(part[:1000])
        if len(parts) == MAX_PARTS:
            break
    return parts


def union(result_lists: Sequence[Sequence[dict]], limit: int) -> list[dict]:
    """Rows of several searches merged round-robin (each search's best first), a chunk once,
    at most `limit`: every part of the question gets its best passages in."""
    merged: list[dict] = []
    seen: set = set()
    depth = max((len(rows) for rows in result_lists), default=0)
    for i in range(depth):
        for rows in result_lists:
            if i < len(rows) and rows[i]["chunk_id"] not in seen:
                seen.add(rows[i]["chunk_id"])
                merged.append(rows[i])
    return merged[:limit]
