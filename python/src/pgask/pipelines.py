"""One handle on a pipeline: its row of rag.pipelines and the names derived from it.

The queue, rag.search and rag.answer all load a pipeline through ``load``; the names of what
a pipeline owns are spelt here once, as sql/ spells them (rag._store, rag._install_capture):
the chunk table of each embedding set, the view over the active one, the function its source
table's capture triggers call and the one that tells whether a key's row is visible.
Pipeline names match ^[a-z_][a-z0-9_]*$ (checked when a pipeline is created), so quoting them
with "" is safe.
"""

from __future__ import annotations

from collections import namedtuple

from pgask import jsonlite
from pgask.plans import prepared

_LOAD = (
    "SELECT name, source::text AS source,"
    " chunker::text AS chunker, embedder, active_set, building_set, building_embedder,"
    " max_attempts, retry_base_seconds, retry_max_seconds, language::text AS language,"
    " search_options::text AS search_options, answer_options::text AS answer_options"
    " FROM rag.pipelines WHERE name = $1"
)
_JSON_COLUMNS = ("chunker", "search_options", "answer_options")


# A named tuple, not a dataclass: importing dataclasses costs a backend ~20 ms (issue 31).
# source is the source table as regclass text; chunker, search_options and answer_options
# are parsed JSON.
_FIELDS = ("name source chunker embedder active_set building_set building_embedder max_attempts"
           " retry_base_seconds retry_max_seconds language search_options answer_options")


class Pipeline(namedtuple("Pipeline", _FIELDS)):
    """A row of rag.pipelines (JSON columns parsed)."""

    __slots__ = ()

    def store_name(self, embedding_set: int) -> str:
        """The chunk table of an embedding set, unqualified (rag._store; rag.bm25_stats)."""
        return f"{self.name}_chunks_{embedding_set}"

    @property
    def store(self) -> str:
        """The active set's chunk table, unqualified (what rag._bm25_idf takes)."""
        return self.store_name(self.active_set)

    def table(self, embedding_set: int) -> str:
        """The chunk table of an embedding set, qualified and quoted for SQL text."""
        return f'rag."{self.store_name(embedding_set)}"'

    @property
    def view(self) -> str:
        """The view over the active set's chunk table, qualified and quoted."""
        return f'rag."{self.name}_chunks"'

    @property
    def capture_function(self) -> str:
        """The trigger function rag._install_capture makes for the source's capture triggers."""
        return f'rag."pgask_{self.name}_capture"'

    @property
    def visibility_function(self) -> str:
        """rag._install_visibility's function: may the caller see the source row of a key?"""
        return f'rag."pgask_{self.name}_visible"'

    def embedder_for(self, embedding_set: int) -> str | None:
        """The embedder of an embedding set: the active one's, or the one being built's."""
        return self.embedder if embedding_set == self.active_set else self.building_embedder


def load(plpy, name: str) -> Pipeline:
    """The pipeline named ``name``; LookupError when there is none (dropped meanwhile)."""
    rows = plpy.execute(prepared(plpy, _LOAD, ["text"]), [name])
    if not rows:
        raise LookupError(f"pipeline {name!r} does not exist")
    row = dict(rows[0])
    for column in _JSON_COLUMNS:
        row[column] = jsonlite.loads(row[column]) if row[column] is not None else None
    return Pipeline(**row)
