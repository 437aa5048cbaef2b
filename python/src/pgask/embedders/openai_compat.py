"""Any OpenAI-compatible /v1/embeddings endpoint: OpenAI, Azure, Ollama, vLLM, TEI, or
`pgask serve-embeddings`. Inputs are sent in batches bounded by count and by tokens; failures
become EmbedderError, classified for the queue's retry policy (pgask.providers.retry), with
the API key redacted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pgask.providers import EmbedderError, redact, retry_after_seconds
from pgask.providers.deadline import deadline, with_deadlines

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BATCH_INPUTS = 128
DEFAULT_MAX_BATCH_TOKENS = 8000
# text-embedding-3-* accept 8,191 tokens per input; a longer chunk would be refused.
DEFAULT_MAX_INPUT_TOKENS = 8191


# The options an embedder row may carry: (kind, low, high) for numbers, or "bool".
OPTIONS = {
    "timeout_seconds": ("number", 0.1, 3600),
    "max_batch_inputs": ("integer", 1, 100_000),
    "max_batch_tokens": ("integer", 1, 10_000_000),
    "max_input_tokens": ("integer", 1, 1_000_000),
    "send_dimensions": ("bool", None, None),
}


def options_error(options) -> str | None:
    """Why an embedder's options cannot be used (None if they can), checked when the
    embedder is registered rather than at its first use in a worker."""
    if not isinstance(options, dict):
        return "options must be a JSON object"
    for key, value in options.items():
        if key not in OPTIONS:
            return f"unknown option \"{key}\"; known: {', '.join(OPTIONS)}"
        kind, low, high = OPTIONS[key]
        if kind == "bool":
            if not isinstance(value, bool):
                return f"option {key} must be true or false, got {value!r}"
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and kind == "integer":
            ok = isinstance(value, int) or value.is_integer()
        if not ok or not low <= value <= high:  # (ints compare exactly, however large)
            kind_text = "an integer" if kind == "integer" else "a number"
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"option {key} must be {kind_text} between {low} and {high}, got {shown}"
    return None


def vector_problem(vectors: np.ndarray) -> str | None:
    """Why rows of `vectors` cannot be stored or searched (None if they can): a NaN or an
    infinite value (also a number beyond float32's range), or a zero vector."""
    if not np.isfinite(vectors).all():
        return "a vector with NaN or infinite values (or beyond float32's range)"
    if (np.abs(vectors).max(axis=1, initial=0.0) == 0).any():
        return "a zero vector (it has no direction to compare by cosine)"
    return None


def _estimate_tokens(text: str) -> int:
    from pgask.tokenization import get_counter

    return get_counter("cl100k_base")(text)


class OpenAICompatibleEmbedder:
    def __init__(self, *, name: str, base_url: str, model: str, dimensions: int,
                 api_key: str | None, options: dict | None = None,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        import openai

        options = options or {}
        self.name = name
        self.model = model
        self.dimensions = dimensions
        self.base_url = base_url
        self.timeout = float(options.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        self.max_batch_inputs = int(options.get("max_batch_inputs", DEFAULT_MAX_BATCH_INPUTS))
        self.max_batch_tokens = int(options.get("max_batch_tokens", DEFAULT_MAX_BATCH_TOKENS))
        self.max_input_tokens = int(options.get("max_input_tokens", DEFAULT_MAX_INPUT_TOKENS))
        self.send_dimensions = bool(options.get("send_dimensions", False))
        self.count_tokens = count_tokens or _estimate_tokens
        self._api_key = api_key
        # Retries belong to the queue (backoff, dead letters), not to the HTTP client.
        # A request's timeout is a total deadline (pgask.providers.deadline), not httpx's
        # per-read one: a provider dripping its answer cannot hold a worker or a query.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                     timeout=self.timeout, max_retries=0,
                                     http_client=with_deadlines(openai.DefaultHttpxClient()))

    def input_limit(self) -> tuple[Callable[[str], int], int]:
        return self.count_tokens, self.max_input_tokens

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Indexes of `texts` grouped so each request stays within both batch limits."""
        groups: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for i, text in enumerate(texts):
            n = self.count_tokens(text)
            if current and (len(current) >= self.max_batch_inputs
                            or tokens + n > self.max_batch_tokens):
                groups.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += n
        if current:
            groups.append(current)
        return groups

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for group in self.batches(texts):
            vectors = self._request([texts[i] for i in group])
            out[group] = vectors
        return out

    def embed_query(self, text: str, timeout: float, setting: str) -> np.ndarray:
        """One text's vector in one request that may take `timeout` seconds (a query's
        embedding: someone is waiting); a timeout's message names `setting`."""
        return self._request([text], (timeout, setting))[0]

    def _request(self, inputs: list[str],
                 timeout: tuple[float, str] | None = None) -> np.ndarray:
        import openai

        extra = {"dimensions": self.dimensions} if self.send_dimensions else {}
        if timeout is not None:
            extra["timeout"] = timeout[0]
        seconds, setting = timeout or (self.timeout, "options.timeout_seconds")
        try:
            with deadline(seconds):
                response = self._client.embeddings.create(
                    model=self.model, input=inputs, encoding_format="float", **extra)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise EmbedderError(f"embedder {self.name}: no answer from {self.base_url} within "
                                f"{seconds:g} s ({setting})") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise EmbedderError(
                f"embedder {self.name}: cannot connect to {self.base_url} "
                f"({redact(str(cause), self._api_key)}); check base_url in rag.embedders"
            ) from None
        except (ValueError, TypeError, openai.APIError) as exc:
            # A 200 whose body is not the embeddings API's JSON (cut short, or not JSON).
            raise EmbedderError(
                f"embedder {self.name}: unreadable answer from {self.base_url} "
                f"({type(exc).__name__}: {redact(str(exc), self._api_key)[:200]})") from None
        data = getattr(response, "data", None)
        if not isinstance(data, list) or not all(
                isinstance(getattr(d, "index", None), int) for d in data):
            # JSON, but not the embeddings API's: {"error": ...} with status 200, {}, a list.
            raise EmbedderError(
                f"embedder {self.name}: the answer from {self.base_url} has no list \"data\" "
                "of indexed embeddings (is base_url an OpenAI-compatible embeddings API?)",
                retryable=False)
        data = sorted(data, key=lambda d: d.index)
        if len(data) != len(inputs):
            raise EmbedderError(f"embedder {self.name}: asked for {len(inputs)} embeddings, "
                                f"got {len(data)}", retryable=False)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # checked below, by value
                vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        except (ValueError, TypeError, AttributeError) as exc:
            # Not numbers ("could not convert string to float: '...'" quotes the reply,
            # which may hold the key), or no embedding at all: the queue records this
            # message where readers see it.
            raise EmbedderError(
                f"embedder {self.name}: unreadable vectors from {self.base_url} "
                f"({redact(str(exc), self._api_key)[:200]})", retryable=False) from None
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            shape = (f"{vectors.shape[1]}-dimensional vectors" if vectors.ndim == 2 else
                     f"embeddings of shape {list(vectors.shape[1:])} (not lists of numbers)")
            raise EmbedderError(
                f"embedder {self.name}: {self.model} returned {shape}, but the embedder is "
                f"registered with {self.dimensions} dimensions", retryable=False)
        problem = vector_problem(vectors)
        if problem:
            # pgvector refuses NaN and infinity (a search or a chunk write would fail), and
            # a zero vector has no cosine (every similarity to it is NaN).
            raise EmbedderError(f"embedder {self.name}: {self.model} returned {problem}",
                                retryable=False)
        return vectors

    def _status_error(self, exc) -> EmbedderError:
        status = exc.status_code
        body = redact(str(getattr(exc, "message", exc)), self._api_key)[:300]
        message = f"embedder {self.name}: HTTP {status} from {self.base_url}: {body}"
        if status == 429:
            return EmbedderError(message, status=status, retry_after=retry_after_seconds(
                exc.response.headers if exc.response is not None else None))
        if status in (401, 403):
            return EmbedderError(message + " (check api_key_env in rag.embedders)",
                                 retryable=False, status=status)
        return EmbedderError(message, retryable=status >= 500 or status in (408, 409),
                             status=status)

