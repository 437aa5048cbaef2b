"""Sentence vectors kept with their chunk: the columns sentence_spans and sentence_vectors.

The worker stores, for each chunk the local model embeds, the vector of every sentence the
extractive answerer can cite (pgask.answering.extractive.sentence_spans), pooled from the
chunk's own forward pass; the answerer reads them back instead of embedding ~90 sentences per
question. float16 halves the bytes; a cosine between unit vectors loses ~1e-3 in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode(spans: Sequence[tuple[int, int]], vectors: np.ndarray) -> tuple[str, bytes]:
    """(sentence_spans as an integer[] literal, sentence_vectors) for the spans whose row in
    `vectors` is not NaN (a span the model did not see whole). Empty, not NULL, when none is
    left: NULL means never computed."""
    keep = ~np.isnan(vectors).any(axis=1) if len(vectors) else np.zeros(0, dtype=bool)
    flat = [str(x) for (start, end), kept in zip(spans, keep, strict=True) if kept
            for x in (start, end)]
    return "{" + ",".join(flat) + "}", vectors[keep].astype("<f2").tobytes()


def decode(spans: Sequence[int] | None, blob: bytes | None, dimensions: int
           ) -> dict[tuple[int, int], np.ndarray] | None:
    """The vectors by (start, end), as Passage.sentences takes them; None without any, or
    when the two columns do not agree (written by something else: embed them again)."""
    if spans is None or blob is None:
        return None
    vectors = np.frombuffer(bytes(blob), dtype="<f2")
    if len(spans) % 2 or vectors.size != len(spans) // 2 * dimensions:
        return None
    vectors = vectors.reshape(-1, dimensions).astype(np.float32)
    return {(int(spans[2 * i]), int(spans[2 * i + 1])): vectors[i] for i in range(len(vectors))}
