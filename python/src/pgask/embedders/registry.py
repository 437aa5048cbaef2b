"""Embedders as data: builds the provider for a row of rag.embedders, once per backend."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

from pgask import jsonlite
from pgask.embedders.local import MAX_INPUT_TOKENS, count_tokens
from pgask.embedders.service import backend_embedder
from pgask.providers import EmbedderError, read_secret, resolve_api_key

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:
    import numpy as np


# A named tuple, not a dataclass: importing dataclasses costs a backend ~20 ms (issue 31).
# options_json is JSON text, so the spec is hashable and can key the cache.
class EmbedderSpec(namedtuple("EmbedderSpec", "name provider model dimensions base_url"
                              " api_key_env options_json", defaults=("{}",))):
    """A row of rag.embedders."""

    __slots__ = ()

    @property
    def options(self) -> dict:
        return jsonlite.loads(self.options_json)


class LocalProvider:
    """The offline model behind the provider interface."""

    def __init__(self, spec: EmbedderSpec) -> None:
        self.name = spec.name
        self.model = spec.model
        self.dimensions = spec.dimensions

    def input_limit(self) -> tuple[Callable[[str], int], int]:
        return count_tokens, MAX_INPUT_TOKENS

    def embed(self, texts: list[str]) -> np.ndarray:
        return backend_embedder().embed(texts)

    def embed_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
        """With the vectors of character spans (sentences) read in context: the queue
        stores them for the extractive answerer, which uses this same model."""
        return backend_embedder().embed_with_spans(texts, spans)


_providers: dict[EmbedderSpec, object] = {}


def provider_for(spec: EmbedderSpec, read_secret: Callable[[str], str | None]):
    """The provider for `spec`; rebuilt when the row changes (the spec is the cache key)."""
    provider = _providers.get(spec)
    if provider is None:
        if spec.provider == "local":
            provider = LocalProvider(spec)
        else:
            from pgask.embedders.openai_compat import OpenAICompatibleEmbedder

            provider = OpenAICompatibleEmbedder(
                name=spec.name, base_url=spec.base_url, model=spec.model,
                dimensions=spec.dimensions, api_key=resolve_api_key(spec, read_secret),
                options=spec.options)
        provider.spec = spec  # identifies what the vectors came from, e.g. for caches
        _providers[spec] = provider
    return provider


def load_embedder(plpy, name: str):
    """The provider of a rag.embedders row, by name (the queue's and a query's; here rather
    than in pgask.queue, whose imports a search does not need)."""
    from pgask.plans import prepared

    rows = plpy.execute(prepared(plpy,
        "SELECT name, provider, model, dimensions, base_url, api_key_env,"
        " options::text AS options_json FROM rag.embedders WHERE name = $1", ["text"]), [name])
    if not rows:
        raise EmbedderError(f"embedder {name!r} is not registered", retryable=False)
    spec = EmbedderSpec(**dict(rows[0]))
    if (spec.api_key_env or "").startswith("secret:"):
        # Checked on every call, also when the provider is cached: may this role use it?
        key = read_secret(plpy, spec.api_key_env[len("secret:"):])
        return provider_for(spec, lambda _: key)
    return provider_for(spec, lambda s: read_secret(plpy, s))
