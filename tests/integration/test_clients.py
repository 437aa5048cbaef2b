"""The Python clients (sync and async) and the LangChain and LlamaIndex retrievers and vector
stores, against a real database and the real libraries (the dev extra installs them)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgask import AsyncClient, Client
from pgask.client import Answer, SearchResult


async def while_others_run(awaitable):
    """The awaitable's result, and how many times another task ran while it was awaited: 0
    when it ran its database work on the event loop (blocking it), as a sync call does."""
    ticks, done = 0, False

    async def ticker():
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    result = await awaitable
    ran, done = ticks - before, True
    await task
    return result, ran


@pytest.fixture
def tickets(db):
    # `rank` is a column of the user's that pgask's own rank must not overwrite; sync mode,
    # so what the clients write is searchable when the write returns.
    db.execute("CREATE TABLE tickets (id int PRIMARY KEY, subject text, body text, team text,"
               " rank int)")
    db.execute("INSERT INTO tickets VALUES"
               " (1, 'Disk full', 'The primary ran out of disk because WAL archives piled up.',"
               "  'sre', 7),"
               " (2, 'Disk alert on the replica', 'The replica disk filled with old logs.', 'db',"
               "  8),"
               " (3, 'Slow dashboard', 'The sales dashboard takes a minute to load.', 'bi', 9)")
    db.execute("SELECT rag.create_pipeline('tickets', 'tickets', 'body', title => 'subject',"
               " metadata => ARRAY['team', 'rank'], mode => 'sync')")
    db.execute("CALL rag.process_queue()")
    return db


def test_client_search_returns_dataclasses_with_filter_mode_and_pipeline(tickets, db_url):
    with Client(db_url) as pg:
        hits = pg.search("disk filled up", k=3, pipeline="tickets")
        assert [type(h) for h in hits] == [SearchResult] * 3
        assert [h.rank for h in hits] == [1, 2, 3]
        assert {h.document_id for h in hits[:2]} == {"1", "2"}
        assert hits[0].metadata["team"] in {"sre", "db"} and hits[0].source

        filtered = pg.search("disk filled up", k=3, pipeline="tickets", filter={"team": "db"})
        assert [(h.document_id, h.metadata["team"]) for h in filtered] == [("2", "db")]

        keyword = pg.search("dashboard", k=3, pipeline="tickets", mode="keyword")
        assert [h.document_id for h in keyword] == ["3"]
        assert keyword[0].vector_rank is None and keyword[0].keyword_rank == 1


def test_client_ask_returns_an_answer_with_citations_and_takes_feedback(tickets, db_url):
    with Client(db_url) as pg:
        answer = pg.ask("Why did the primary run out of disk?", pipeline="tickets",
                        model="extractive")
        assert isinstance(answer, Answer) and answer.answered and answer.mode == "extractive"
        assert "WAL archives" in answer.answer
        assert answer.citations[0].n == 1 and answer.citations[0].document_id == "1"
        assert answer.citations[0].span is not None
        assert pg.feedback(answer.answer_id, True, "right") > 0
        unknown = pg.ask("Who won the 1998 world cup?", pipeline="tickets")
        assert unknown.mode == "no_answer" and not unknown.answered and unknown.citations == []
    assert tickets.execute("SELECT helpful FROM rag.answer_feedback").fetchall() == [(True,)]


def test_client_passes_the_databases_errors_through(tickets, db_url):
    with Client(db_url) as pg, pytest.raises(psycopg.errors.InvalidParameterValue,
                                             match="k must be"):
        pg.search("disk", k=0)


def test_client_uses_a_given_connection(tickets):
    pg = Client(connection=tickets)
    assert pg.search("dashboard", k=1, pipeline="tickets")[0].document_id == "3"
    pg.close()
    assert not tickets.closed  # not ours to close


def test_relevance_is_in_zero_one_in_every_mode_and_the_raw_score_stays(tickets, db_url):
    with Client(db_url) as pg:
        for mode in ("hybrid", "vector", "keyword"):
            hits = pg.search("disk filled up", k=3, pipeline="tickets", mode=mode)
            assert hits and all(0.0 <= h.relevance <= 1.0 for h in hits), mode
        # A lone hit keeps its relevance (its z-score is 0.0) ...
        (lone,) = pg.search("dashboard", k=1, pipeline="tickets", mode="keyword")
        assert lone.score > 0 and lone.relevance == lone.score / (lone.score + 1)
        # ... and so does the last hybrid hit, whose z-score fusion is negative.
        hybrid = pg.search("disk filled up", k=3, pipeline="tickets")
        assert hybrid[-1].score < 0 < hybrid[-1].relevance
        vector = pg.search("disk filled up", k=3, pipeline="tickets", mode="vector")
        assert [h.relevance for h in vector] == [max(0.0, h.vector_score) for h in vector]


def test_client_add_and_delete_write_the_source_tables(tickets, db_url):
    with Client(db_url) as pg:
        ids = pg.add(["The certificate expired on the load balancer."], ids=["4"],
                     metadatas=[{"team": "sre", "rank": 1}], titles=["TLS expiry"],
                     pipeline="tickets")
        assert ids == ["4"]
        assert tickets.execute("SELECT subject, team, rank FROM tickets WHERE id = 4"
                               ).fetchone() == ("TLS expiry", "sre", 1)
        (hit,) = pg.search("certificate expired", k=1, pipeline="tickets")
        assert (hit.document_id, hit.title, hit.metadata) == ("4", "TLS expiry",
                                                              {"team": "sre", "rank": 1})
        # rag.documents: ids are its sources, metadata its metadata column.
        assert pg.add(["Rotate the TLS certificates every 90 days."], ids=["tls.md"],
                      metadatas=[{"lang": "en"}]) == ["tls.md"]
        (doc,) = pg.search("rotate certificates", k=1, filter={"lang": "en"})
        assert doc.source == "tls.md" and doc.metadata["lang"] == "en"
        assert pg.delete(["4"], pipeline="tickets") == 1 and pg.delete(["tls.md"]) == 1
        assert pg.search("certificate expired", k=3, pipeline="tickets", mode="keyword") == []
        with pytest.raises(psycopg.errors.UndefinedColumn):
            pg.add(["x"], metadatas=[{"no_such_column": 1}], pipeline="tickets")


def test_async_client_searches_answers_and_writes(tickets, db_url):
    async def scenario():
        async with AsyncClient(db_url) as pg:
            ids = await pg.add(["The certificate expired on the load balancer."], ids=["4"],
                               metadatas=[{"team": "sre"}], pipeline="tickets")
            hits = await pg.search("certificate expired", k=2, pipeline="tickets",
                                   filter={"team": "sre"})
            answer = await pg.ask("Why did the primary run out of disk?", pipeline="tickets",
                                  model="extractive")
            deleted = await pg.delete(ids, pipeline="tickets")
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be"):
                await pg.search("disk", k=0)
            return ids, hits, answer, deleted

    ids, hits, answer, deleted = asyncio.run(scenario())
    assert ids == ["4"] and deleted == 1
    assert [h.document_id for h in hits] == ["4", "1"] and type(hits[0]) is SearchResult
    assert answer.answered and answer.citations[0].document_id == "1"


def test_langchain_retriever(tickets, db_url):
    pytest.importorskip("langchain_core", reason="pip install 'pgask[langchain]'")
    import pydantic
    from langchain_core.documents import Document

    from pgask.integrations.langchain import PgaskRetriever

    retriever = PgaskRetriever(dsn=db_url, k=2, pipeline="tickets", filter={"team": "db"})
    docs = retriever.invoke("disk filled up")
    assert [type(d) for d in docs] == [Document]
    assert docs[0].page_content == "The replica disk filled with old logs."
    pgask = docs[0].metadata["pgask"]
    assert docs[0].id == str(pgask["chunk_id"])
    # The user's own columns (rank among them) as they are; pgask's fields under "pgask".
    assert docs[0].metadata == {"team": "db", "rank": 8, "pgask": pgask}
    assert pgask | {"score": None, "relevance": None} == {
        "chunk_id": pgask["chunk_id"], "document_id": "2",
        "title": "Disk alert on the replica", "source": "tickets:2", "pipeline": "tickets",
        "score": None, "relevance": None, "rank": 1,
        "citation": "[1] Disk alert on the replica (tickets:2)"}
    assert 0 < pgask["relevance"] <= 1
    # Per-call settings override the retriever's: no filter, keyword mode; sync and async.
    docs = retriever.invoke("dashboard", filter=None, mode="keyword", k=1)
    assert [d.metadata["pgask"]["document_id"] for d in docs] == ["3"]
    docs = asyncio.run(retriever.ainvoke("dashboard", filter=None, mode="keyword", k=1))
    assert [d.metadata["pgask"]["document_id"] for d in docs] == ["3"]
    # search_kwargs, as LangChain's retrievers take them; a misspelt argument is an error.
    assert len(PgaskRetriever(dsn=db_url, pipeline="tickets",
                              search_kwargs={"k": 2}).invoke("disk")) == 2
    with pytest.raises(pydantic.ValidationError, match="top_k"):
        PgaskRetriever(dsn=db_url, top_k=2)
    # Given a sync connection, async calls use it from a worker thread, off the loop.
    given = PgaskRetriever(client=Client(connection=tickets), pipeline="tickets", k=1)
    docs, others_ran = asyncio.run(while_others_run(given.ainvoke("dashboard")))
    assert [d.metadata["pgask"]["document_id"] for d in docs] == ["3"] and others_ran > 0


def test_langchain_vector_store_sync(tickets, db_url):
    pytest.importorskip("langchain_core", reason="pip install 'pgask[langchain]'")
    from langchain_core.documents import Document
    from langchain_core.vectorstores import VectorStore

    from pgask.integrations.langchain import PgaskVectorStore

    store = PgaskVectorStore(db_url, pipeline="tickets")
    assert isinstance(store, VectorStore) and store.embeddings is None
    ids = store.add_documents([Document("The certificate expired on the load balancer.",
                                        id="4", metadata={"team": "sre", "rank": 2})])
    assert ids == ["4"]
    scored = store.similarity_search_with_score("certificate expired", k=2,
                                                filter={"team": "sre"})
    assert [(d.id, d.metadata["team"], d.metadata["rank"]) for d, _ in scored] == [
        ("4", "sre", 2), ("1", "sre", 7)]
    assert all(0 <= s <= 1 for _, s in scored) and scored[0][1] > scored[1][1]
    assert scored[0][0].metadata["pgask"]["rank"] == 1  # pgask's rank, beside the user's
    # as_retriever honours search_kwargs: k, filter, and a threshold over the relevances.
    assert len(store.as_retriever(search_kwargs={"k": 2}).invoke("disk")) == 2
    assert [d.id for d in store.as_retriever(search_kwargs={"k": 4, "filter": {"team": "bi"}}
                                             ).invoke("disk")] == ["3"]
    threshold = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 4, "score_threshold": 0.4})
    assert {d.id for d in threshold.invoke("certificate expired")} == {"4"}
    mmr = store.max_marginal_relevance_search("disk filled up", k=2, fetch_k=8,
                                              lambda_mult=0.3)
    assert len(mmr) == 2 and len({d.id for d in mmr}) == 2
    assert store.delete(["4"]) is True
    assert "4" not in {d.id for d in store.similarity_search("certificate expired", k=4)}


def test_langchain_vector_store_async_on_an_async_connection(tickets, db_url):
    pytest.importorskip("langchain_core", reason="pip install 'pgask[langchain]'")
    from pgask.integrations.langchain import PgaskVectorStore

    async def scenario():
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            store = await PgaskVectorStore.afrom_texts(
                ["Rotate the TLS certificates every 90 days."], None,
                metadatas=[{"lang": "en", "score": "A+", "title": "mine"}], ids=["tls.md"],
                connection=conn)
            retriever = store.as_retriever(search_kwargs={"k": 1, "filter": {"lang": "en"}})
            docs, others_ran = await while_others_run(
                retriever.ainvoke("certificate rotation"))
            assert others_ran > 0  # the loop was not blocked
            scored = await store.asimilarity_search_with_relevance_scores("certificates", k=1)
            mmr = await store.amax_marginal_relevance_search("certificates", k=1)
            await store.adelete(["tls.md"])
            after = await store.asimilarity_search("certificates", k=1,
                                                   filter={"lang": "en"})
            with pytest.raises(TypeError, match="async"):
                store.similarity_search("certificates")
            return docs, scored, mmr, after

    docs, scored, mmr, after = asyncio.run(scenario())
    assert [d.id for d in docs] == ["tls.md"]
    # The user's own score and title are theirs; pgask's are under "pgask".
    assert docs[0].metadata["score"] == "A+" and docs[0].metadata["title"] == "mine"
    assert isinstance(docs[0].metadata["pgask"]["score"], float)
    assert scored[0][0].id == "tls.md" and 0 < scored[0][1] <= 1
    assert [d.id for d in mmr] == ["tls.md"] and after == []


def test_llamaindex_retriever(tickets, db_url):
    pytest.importorskip("llama_index.core", reason="pip install 'pgask[llamaindex]'")
    from llama_index.core.schema import MetadataMode, NodeWithScore

    from pgask.integrations.llamaindex import PgaskRetriever

    retriever = PgaskRetriever(db_url, similarity_top_k=3, pipeline="tickets", mode="hybrid",
                               filter={"team": {"$in": ["sre", "db"]}})
    nodes = retriever.retrieve("disk filled up")
    assert [type(n) for n in nodes] == [NodeWithScore, NodeWithScore]
    assert {n.node.ref_doc_id for n in nodes} == {"1", "2"}
    # The relevance, in [0, 1]; the fused score (a z-score here) is kept beside it.
    assert all(0 < n.score <= 1 for n in nodes)
    assert nodes[0].node.metadata["pgask"]["citation"].startswith("[1] Disk")
    assert nodes[0].node.node_id == str(nodes[0].node.metadata["pgask"]["chunk_id"])
    # The LLM sees the user's fields, not pgask's bookkeeping.
    prompt = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "team: " in prompt and "rank: " in prompt and "citation" not in prompt
    # aretrieve awaits the database: the event loop goes on serving other tasks meanwhile.
    again, others_ran = asyncio.run(while_others_run(retriever.aretrieve("disk filled up")))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]
    assert others_ran > 0


def test_llamaindex_vector_store(tickets, db_url):
    pytest.importorskip("llama_index.core", reason="pip install 'pgask[llamaindex]'")
    from llama_index.core import Document, MockEmbedding, VectorStoreIndex
    from llama_index.core.postprocessor import SimilarityPostprocessor
    from llama_index.core.vector_stores import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
    )

    from pgask.integrations.llamaindex import PgaskVectorStore

    store = PgaskVectorStore(db_url, pipeline="tickets")
    # The database embeds: LlamaIndex's own vectors (it insists on an embed_model) are unused.
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=1))
    index.insert(Document(text="The certificate expired on the load balancer.", doc_id="4",
                          metadata={"team": "sre", "rank": 3}))
    assert tickets.execute("SELECT team, rank FROM tickets WHERE id = 4").fetchone() == ("sre", 3)
    nodes = index.as_retriever(similarity_top_k=2).retrieve("certificate expired")
    assert len(nodes) == 2 and nodes[0].node.ref_doc_id == "4"
    assert nodes[0].node.metadata["rank"] == 3 and nodes[0].node.metadata["pgask"]["rank"] == 1
    kept = SimilarityPostprocessor(similarity_cutoff=0.4).postprocess_nodes(nodes)
    assert [n.node.ref_doc_id for n in kept] == ["4"]
    filters = MetadataFilters(filters=[
        MetadataFilter(key="team", value=["db", "bi"], operator=FilterOperator.IN),
        MetadataFilter(key="rank", value=9, operator=FilterOperator.LT)])
    result = store.query(VectorStoreQuery(query_str="disk", similarity_top_k=5,
                                          filters=filters))
    assert [n.ref_doc_id for n in result.nodes] == ["2"]
    assert all(0 <= s <= 1 for s in result.similarities)
    aresult = asyncio.run(store.aquery(VectorStoreQuery(query_str="disk", similarity_top_k=1)))
    assert len(aresult.nodes) == 1
    asyncio.run(store.adelete("4"))
    assert tickets.execute("SELECT count(*) FROM tickets WHERE id = 4").fetchone() == (0,)
