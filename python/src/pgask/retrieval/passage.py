"""A retrieved chunk as the answerers need it: the extractive answerer, and the prompt a
generated answer is asked from (which reads only the content and the title)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Passage:
    content: str
    title: str | None = None
    chunk_id: int | None = None
    document_id: int | str | None = None
    source: str = ""
    char_start: int = 0  # offset of the chunk in its document, so spans point into the document
    ordinal: int = 0
    score: float = 1.0  # retrieval score (cosine similarity to the question)
    # The local model's vectors of the chunk's sentences by their (start, end) in `content`,
    # computed at index time (pgask.answering.extractive.sentence_spans); the extractive
    # answerer embeds only the sentences missing here.
    sentences: Mapping[tuple[int, int], np.ndarray] | None = field(
        default=None, compare=False, hash=False)
