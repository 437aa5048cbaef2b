"""What pooling each chunk's sentence vectors adds to embedding the chunks (the local model).

The worker embeds chunks with `LocalEmbedder.embed_with_spans`, which also averages the token
states of each sentence from the same forward pass. This times it against `embed` (the chunk
vectors alone) on the chunks of the first manual pages `make bench` ingests, alternating the
two, and prints the medians. Run with OPENBLAS_NUM_THREADS=1 to see what numpy's BLAS threads
cost next to onnxruntime's on a small machine.

    python scripts/measure_pooling.py --pages 40 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

from pgask.answering.extractive import sentence_spans  # noqa: E402
from pgask.embedders.local import LocalEmbedder  # noqa: E402
from pgask_measure.bench.common import chunk_inputs, manual_pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=40, help="manual pages (default 40)")
    parser.add_argument("--rounds", type=int, default=5, help="timings of each (default 5)")
    args = parser.parse_args()
    texts = chunk_inputs([page.content for page in manual_pages(args.pages)])
    # The chunk is the whole embedded text here (no title), so its sentences are the spans.
    spans = [sentence_spans(text) for text in texts]
    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    alone, pooled = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        embedder.embed(texts)
        alone.append(time.perf_counter() - started)
        started = time.perf_counter()
        embedder.embed_with_spans(texts, spans)
        pooled.append(time.perf_counter() - started)
    a, b = statistics.median(alone), statistics.median(pooled)
    print(f"{len(texts)} chunks, {sum(map(len, spans))} sentences, {args.rounds} rounds each")
    print(f"embed            {a:6.2f} s")
    print(f"embed_with_spans {b:6.2f} s  ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
