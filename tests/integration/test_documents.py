"""The documents trigger keeps chunks and embeddings in step with rag.documents."""

from fix_db import add_document

POSTGRES_TEXT = """Indexes are a common way to enhance database performance.

An index allows the database server to find and retrieve specific rows much faster than it
could do without an index. But indexes also add overhead to the database system as a whole."""


def chunks_of(db, document_id):
    return db.execute(
        "SELECT id, ordinal, content, token_count, char_start, char_end, embed_hash,"
        " vector_dims(embedding) FROM rag.documents_chunks WHERE document_id = %s"
        " ORDER BY ordinal",
        (str(document_id),),
    ).fetchall()


def test_insert_chunks_and_embeds(db):
    document_id = add_document(db, "indexes.md", POSTGRES_TEXT, "Indexes")
    chunks = chunks_of(db, document_id)
    assert len(chunks) >= 1
    for _, _, content, tokens, start, end, digest, dims in chunks:
        assert POSTGRES_TEXT[start:end] == content
        assert 0 < tokens <= 254 and dims == 384 and len(digest) == 32


def test_long_document_splits_within_model_limit(db):
    text = "\n\n".join(f"Paragraph {i}. " + "Rows are stored in heap pages. " * 30
                       for i in range(6))
    document_id = add_document(db, "long.txt", text, "A title that takes some tokens")
    chunks = chunks_of(db, document_id)
    assert len(chunks) > 3
    assert [c[1] for c in chunks] == list(range(len(chunks)))
    assert all(text[c[4]:c[5]] == c[2] for c in chunks)
    # Title (7 word pieces) and chunk together fit the model's 254-piece input.
    assert max(c[3] for c in chunks) <= 254 - 7


def test_update_of_content_replaces_chunks(db):
    document_id = add_document(db, "a.md", "The first version talks about apples.")
    before = chunks_of(db, document_id)
    db.execute("UPDATE rag.documents SET content = 'The second version talks about pears.'"
               " WHERE id = %s", (document_id,))
    after = chunks_of(db, document_id)
    assert [c[2] for c in after] == ["The second version talks about pears."]
    assert {c[0] for c in before}.isdisjoint({c[0] for c in after})
    (nearest,) = db.execute(
        "SELECT content FROM rag.documents_chunks ORDER BY embedding <=> rag.embed('pears')"
        " LIMIT 1"
    ).fetchone()
    assert "pears" in nearest


def embedded_count(db):
    return db.execute("SELECT chunks_embedded FROM rag.pipeline_status"
                      " WHERE pipeline = 'documents'").fetchone()[0]


def test_update_of_other_columns_embeds_nothing(db):
    document_id = add_document(db, "b.md", "Unchanged content about B-tree indexes.")
    before = chunks_of(db, document_id)
    embedded = embedded_count(db)
    db.execute("UPDATE rag.documents SET content = content WHERE id = %s", (document_id,))
    db.execute("UPDATE rag.documents SET updated_at = now() WHERE id = %s", (document_id,))
    assert chunks_of(db, document_id) == before
    # Metadata is copied into the chunks, so they are rewritten, but no text is re-embedded.
    db.execute("UPDATE rag.documents SET metadata = '{\"team\": \"dba\"}' WHERE id = %s",
               (document_id,))
    after = chunks_of(db, document_id)
    assert [c[1:] for c in after] == [c[1:] for c in before]
    assert embedded_count(db) == embedded
    (metadata,) = db.execute("SELECT metadata FROM rag.documents_chunks WHERE document_id = %s",
                             (str(document_id),)).fetchone()
    assert metadata == {"source": "b.md", "team": "dba"}  # filterable as {"team": "dba"}


def test_updated_at_moves_on_update(db):
    document_id = add_document(db, "c.md", "Some content.")
    db.execute("UPDATE rag.documents SET updated_at = '2000-01-01' WHERE id = %s", (document_id,))
    (updated_at,) = db.execute("SELECT updated_at > now() - interval '1 minute'"
                               " FROM rag.documents WHERE id = %s", (document_id,)).fetchone()
    assert updated_at


def test_delete_removes_chunks(db):
    """Gone from search when the DELETE commits (the writer deletes no chunk, even in a
    sync pipeline); its chunks go with the next rag.process_queue."""
    document_id = add_document(db, "d.md", POSTGRES_TEXT)
    keep_id = add_document(db, "e.md", "Another document stays.")
    db.execute("DELETE FROM rag.documents WHERE id = %s", (document_id,))
    assert {r[0] for r in db.execute("SELECT document_id FROM rag.search('index overhead', 5)"
                                     )} == {str(keep_id)}
    db.execute("CALL rag.process_queue()")
    assert chunks_of(db, document_id) == []
    assert len(chunks_of(db, keep_id)) == 1


def test_empty_document_has_no_chunks(db):
    document_id = add_document(db, "empty.md", "   \n\n  ")
    assert chunks_of(db, document_id) == []
