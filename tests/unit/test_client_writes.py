"""The clients' pure parts: what `add` writes for a pipeline (pgask.writes), the relevance of a
hit, and LlamaIndex's filters as rag.search's. The writes against a real database, and every
integration, are in tests/integration/test_clients.py."""

from __future__ import annotations

import pytest

from pgask import writes
from pgask.client import SearchResult


def hit(**scores) -> SearchResult:
    return SearchResult(chunk_id=1, document_id="1", title="", source="t:1", content="x",
                        metadata={}, score=scores.pop("score", 0.0), rank=1, **scores)


def test_relevance_is_the_larger_signal_in_zero_one_whatever_the_raw_score():
    assert hit(score=-2.3, vector_score=0.5).relevance == 0.5
    assert hit(score=3.0, keyword_score=3.0).relevance == 0.75
    assert hit(vector_score=0.2, keyword_score=1.0).relevance == 0.5
    assert hit(score=1.2, vector_score=-0.1).relevance == 0.0  # opposite, not relevant
    assert hit(score=0.9).relevance == 0.0  # reranked only: no first-stage signal


def test_the_target_is_the_pipelines_columns_as_create_pipeline_wrote_them():
    target = writes.target_from_row("tickets", ("tickets", "s.body",
                                                "coalesce((s.subject)::text, '')", ["id"]))
    assert target == writes.Target("tickets", "body", "subject", ("id",))
    quoted = writes.target_from_row("t", ("t", 's."Body ""x"""', "''::text", ["a", "b"]))
    assert (quoted.content, quoted.title) == ('Body "x"', None)
    expression = writes.target_from_row("t", ("t", "(subject || body)", "''::text", ["a"]))
    with pytest.raises(ValueError, match="SQL expression"):
        writes.insert_statement(expression, "text", None, None)
    with pytest.raises(ValueError, match="2 columns"):
        writes.delete_statement(quoted, ["1"])
    with pytest.raises(LookupError, match="'gone'"):
        writes.target_from_row("gone", None)


def test_a_batch_lines_up_its_lists():
    assert writes.batch(["a", "b"], None, ["1", None], None) == [
        ("a", None, "1", None), ("b", None, None, None)]
    with pytest.raises(ValueError, match="ids has 1 entries for 2 texts"):
        writes.batch(["a", "b"], None, ["1"], None)


def test_documents_are_upserted_by_source():
    statement, params = writes.insert_statement(writes.DOCUMENTS_TARGET, "text",
                                                {"lang": "en"}, "a.md", "A")
    assert "ON CONFLICT (source)" in statement.as_string(None)
    assert params[:3] == ["a.md", "A", "text"] and params[3].obj == {"lang": "en"}
    assert writes.store_id(None, "a.md", "17") == "a.md"
    assert writes.store_id("tickets", "tickets:2", "2") == "2"


def test_llamaindex_filters_become_rag_search_filters():
    pytest.importorskip("llama_index.core", reason="pip install 'pgask[llamaindex]'")
    from llama_index.core.vector_stores import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    from pgask.integrations.llamaindex import filter_json

    team = MetadataFilter(key="team", value="sre")
    assert filter_json(MetadataFilters(filters=[team])) == {"team": {"$eq": "sre"}}
    nested = MetadataFilters(condition=FilterCondition.OR, filters=[
        team, MetadataFilters(filters=[
            MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
            MetadataFilter(key="lang", value=["en"], operator=FilterOperator.NIN)])])
    assert filter_json(nested) == {"$or": [{"team": {"$eq": "sre"}}, {"$and": [
        {"year": {"$gte": 2020}}, {"lang": {"$nin": ["en"]}}]}]}
    with pytest.raises(ValueError, match="'text_match'"):
        filter_json(MetadataFilters(filters=[
            MetadataFilter(key="t", value="x", operator=FilterOperator.TEXT_MATCH)]))
    with pytest.raises(ValueError, match="'not'"):
        filter_json(MetadataFilters(condition=FilterCondition.NOT, filters=[team]))
