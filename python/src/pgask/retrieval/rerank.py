"""Second-stage rerankers: re-score the fused candidates with a model that reads the query and
each passage together.

- provider 'cohere': the /rerank shape of Cohere, Jina, vLLM and most hosted rerankers:
  POST {base_url}/rerank {model, query, documents, top_n} -> {results: [{index,
  relevance_score}]}.
- provider 'tei': Hugging Face text-embeddings-inference: POST {base_url}/rerank {query,
  texts} -> [{index, score}].
- provider 'local': no cross-encoder ships offline (FACTS.md), so the local reranker scores a
  passage by its best sentence's cosine similarity to the query with the pinned MiniLM model:
  a finer-grained reading than one vector per chunk. `make eval` reports whether it helps.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence

# providers.redact is imported when a reranker fails: it uses re, which a search otherwise
# never needs (issue 31: a new connection's first search).
from pgask import jsonlite, providers
from pgask.providers.errors import RerankError
from pgask.providers.keys import resolve_api_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:
    import numpy as np

DEFAULT_TIMEOUT_SECONDS = 30.0


# A named tuple, not a dataclass: importing dataclasses costs a backend ~20 ms (issue 31).
class RerankerSpec(namedtuple("RerankerSpec", "name provider model base_url api_key_env"
                              " options_json", defaults=("{}",))):
    """A row of rag.rerankers."""

    __slots__ = ()


class HttpReranker:
    def __init__(self, spec: RerankerSpec, api_key: str | None, options: dict) -> None:
        self.spec = spec
        self._api_key = api_key
        self.timeout = float(options.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))

    def _request(self, path: str, body: dict):
        # The openai package's HTTP client, with timeout_seconds a total deadline for the
        # request (pgask.providers.deadline): urllib's timeout bounds each read, so a
        # reranker dripping its answer held a search for as long as it liked.
        import importlib

        from pgask.providers.deadline import deadline

        client = _http_client()
        # httpx, or the renamed copy the openai package brings: its exceptions.
        errors = importlib.import_module(type(client._transport).__module__.split(".")[0])
        url = self.spec.base_url.rstrip("/") + path
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            with deadline(self.timeout):
                response = client.post(url, content=jsonlite.dumps(body).encode(),
                                       headers=headers, timeout=self.timeout)
                text = response.text
        except errors.TimeoutException:
            raise RerankError(providers.redact(
                f"reranker {self.spec.name!r} at {url} did not answer within "
                f"{self.timeout:g} s (options.timeout_seconds)", self._api_key)) from None
        except (errors.HTTPError, errors.InvalidURL, OSError, ValueError) as exc:
            raise RerankError(providers.redact(
                f"reranker {self.spec.name!r} could not reach {url} ({exc}); check base_url "
                "in rag.rerankers (rag.create_reranker)", self._api_key)) from None
        if response.status_code >= 400:
            raise RerankError(providers.redact(
                f"reranker {self.spec.name!r} at {url} answered HTTP {response.status_code}: "
                f"{text[:300]}", self._api_key))
        try:
            return jsonlite.loads(text)
        except ValueError:
            raise RerankError(providers.redact(
                f"reranker {self.spec.name!r} at {url} did not answer JSON: {text[:200]!r}",
                self._api_key)) from None

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        if self.spec.provider == "tei":
            rows = self._request("/rerank", {"query": query, "texts": list(passages)})
            pairs = _pairs(_as_list(rows, self.spec.name, self._api_key), "score",
                           self.spec.name)
        else:
            body = {"query": query, "documents": list(passages), "top_n": len(passages)}
            if self.spec.model:
                body["model"] = self.spec.model
            rows = self._request("/rerank", body)
            results = rows.get("results") if isinstance(rows, dict) else None
            pairs = _pairs(_as_list(results, self.spec.name, self._api_key),
                           "relevance_score", self.spec.name)
        # A passage the reranker left out has no score (rag.search puts it after the scored).
        scores: list[float | None] = [None] * len(passages)
        for index, score in pairs:
            if not isinstance(index, int) or isinstance(index, bool) or not (
                    0 <= index < len(passages)):
                raise RerankError(f"reranker {self.spec.name!r} returned index {index!r:.40} "
                                  f"for {len(passages)} passages")
            try:
                scores[index] = float(score)
            except (TypeError, ValueError):
                raise RerankError(f"reranker {self.spec.name!r} returned score {score!r:.40}, "
                                  "not a number") from None
        return scores


def _pairs(rows: list, score_key: str, name: str) -> list[tuple]:
    """(index, score) of each result, or RerankError when one is not {index, score_key}."""
    if not all(isinstance(r, dict) and "index" in r and score_key in r for r in rows):
        raise RerankError(f"reranker {name!r} answered results without \"index\" and "
                          f"\"{score_key}\"")
    return [(r["index"], r[score_key]) for r in rows]


def _as_list(rows, name: str, api_key: str | None) -> list:
    if not isinstance(rows, list):
        # The reply is quoted, and it may hold the key.
        raise RerankError(providers.redact(
            f"reranker {name!r} answered in an unexpected shape: {rows!r:.200}", api_key))
    return rows


class LocalReranker:
    """Best-sentence similarity with the local embedding model."""

    def __init__(self, spec: RerankerSpec,
                 embed: Callable[[list[str]], np.ndarray] | None = None,
                 embed_query: Callable[[str], np.ndarray] | None = None) -> None:
        from pgask.embedders.service import backend_embedder

        self.spec = spec
        model = backend_embedder() if embed is None or embed_query is None else None
        self._embed = embed or model.embed
        self._embed_query = embed_query or model.embed_query

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        from pgask.text import split_sentences

        sentences: list[str] = []
        owner: list[int] = []
        for i, passage in enumerate(passages):
            for start, end in split_sentences(passage) or [(0, len(passage))]:
                text = passage[start:end].strip()
                if text:
                    sentences.append(text)
                    owner.append(i)
        best = [float("-inf")] * len(passages)
        if not sentences:
            return best
        similarity = self._embed(sentences) @ self._embed_query(query)
        for i, score in zip(owner, similarity, strict=True):
            best[i] = max(best[i], float(score))
        return best


_client = None


def _http_client():
    """One HTTP client per backend for every HTTP reranker (connections are reused)."""
    global _client
    if _client is None:
        import openai

        from pgask.providers.deadline import with_deadlines

        _client = with_deadlines(openai.DefaultHttpxClient())
    return _client


def reranker_for(spec: RerankerSpec, options: dict, read_secret: Callable[[str], str | None]):
    if spec.provider == "local":
        return LocalReranker(spec)
    return HttpReranker(spec, resolve_api_key(spec, read_secret, what="reranker"), options)
