"""A fast stand-in embedder for the fleet and scale measurements, served over the OpenAI
embeddings API on loopback from the benchmark process.

Vectors: a hashed bag of words (words of 3+ letters, lower-cased, log-scaled counts) times a
fixed Gaussian random projection to 384 dimensions, L2-normalised. Texts sharing words get
close vectors, so vector search on it means something (unlike random noise), and it costs
microseconds per text where the model takes milliseconds: stores of 100k+ chunks fill in
minutes. It is not a language model: its neighbours are lexical, not semantic.

The server can also wait a fixed time per request (`latency`), standing in for a remote
provider (the worker fleet figures).
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Sequence
from functools import cache
from http.server import ThreadingHTTPServer

import numpy as np

from pgask_measure.bench.common import DIMENSIONS

MODEL = "standin-hashed-projection"
BUCKETS = 1 << 15
_WORD = re.compile(r"[^\W\d_]{3,}")


@cache
def _projection() -> np.ndarray:
    return np.random.default_rng(20261202).standard_normal((BUCKETS, DIMENSIONS),
                                                            dtype=np.float32)


def standin_vectors(texts: Sequence[str]) -> np.ndarray:
    """The stand-in embedding of each text (rows L2-normalised)."""
    projection = _projection()
    out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    for i, text in enumerate(texts):
        buckets = [zlib.crc32(w.encode()) & (BUCKETS - 1) for w in _WORD.findall(text.lower())]
        if not buckets:
            out[i] = projection[0]  # no words: any fixed direction, never a zero vector
            continue
        ids, counts = np.unique(buckets, return_counts=True)
        out[i] = (1 + np.log(counts)).astype(np.float32) @ projection[ids]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _handler(latency: float):
    from pgask.embedding_server import EmbeddingHandler

    class StandinHandler(EmbeddingHandler):
        requests = 0
        lock = threading.Lock()

        def respond_embeddings(self, request: dict, inputs: list[str]) -> None:
            with self.lock:
                type(self).requests += 1
            if latency:
                time.sleep(latency)
            vectors = standin_vectors(inputs)
            words = sum(len(t.split()) for t in inputs)
            self._send_json(200, {"object": "list", "model": MODEL, "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": words, "total_tokens": words}})

    return StandinHandler


class StandinServer:
    """The stand-in on 127.0.0.1 in a daemon thread, for the duration of a `with` block."""

    def __init__(self, latency: float = 0.0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(latency))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        return self.server.RequestHandlerClass.requests

    def register(self, conn, name: str) -> None:
        """Registers this server as embedder `name` (openai provider, 384 dimensions)."""
        conn.execute("SELECT rag.create_embedder(%s, 'openai', %s, %s, %s)",
                     (name, MODEL, DIMENSIONS, self.url))

    def __enter__(self) -> StandinServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
