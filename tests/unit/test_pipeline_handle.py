"""Tests for pgask.pipelines: the names a pipeline's objects have, spelt as sql/ spells them."""

from pgask.pipelines import Pipeline


def handle(**changes) -> Pipeline:
    row = dict(name="docs", source="public.docs", chunker={}, embedder="local",
               active_set=1, building_set=None, building_embedder=None, max_attempts=5,
               retry_base_seconds=10.0, retry_max_seconds=3600.0, language="english",
               search_options={}, answer_options={})
    return Pipeline(**{**row, **changes})


def test_chunk_tables_view_capture_and_visibility_functions():
    p = handle()
    assert p.store_name(2) == "docs_chunks_2"
    assert p.store == "docs_chunks_1"  # the active set's
    assert p.table(2) == 'rag."docs_chunks_2"'
    assert p.view == 'rag."docs_chunks"'
    assert p.capture_function == 'rag."pgask_docs_capture"'
    assert p.visibility_function == 'rag."pgask_docs_visible"'


def test_each_embedding_set_has_its_embedder():
    p = handle(building_set=2, building_embedder="openai")
    assert p.embedder_for(1) == "local"
    assert p.embedder_for(2) == "openai"
