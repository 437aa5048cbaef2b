"""Pipelines over a user's own table: triggers only enqueue, rag.process_queue embeds, and the
chunk store stays exactly in step with the table."""

import psycopg
import pytest
from consistency import queued

ARTICLES = """
CREATE TABLE articles (
    id integer PRIMARY KEY,
    title text,
    body text,
    team text,
    views integer NOT NULL DEFAULT 0
)
"""


def process(db, pipeline="articles", **kwargs):
    args = ", ".join(f"{k} => {v!r}" for k, v in kwargs.items())
    (processed,) = db.execute(
        f"CALL rag.process_queue(pipeline => %s{', ' + args if args else ''})", (pipeline,)
    ).fetchone()
    return processed


def status(db, pipeline="articles"):
    cur = db.execute("SELECT * FROM rag.pipeline_status WHERE pipeline = %s", (pipeline,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def chunk_rows(db, pipeline="articles"):
    return db.execute(
        f"SELECT document_id, ordinal, content, title, metadata FROM rag.{pipeline}_chunks"
        " ORDER BY document_id::int, ordinal").fetchall()


def contents(db, pipeline="articles"):
    return {(r[0], r[2]) for r in chunk_rows(db, pipeline)}


def searched(db, query, pipeline="articles"):
    return [r[0] for r in db.execute("SELECT document_id FROM rag.search(%s, 5,"
                                     " pipeline => %s)", (query, pipeline))]


@pytest.fixture
def articles(db):
    db.execute(ARTICLES)
    db.execute("INSERT INTO articles (id, title, body, team) VALUES"
               " (1, 'Disk full', 'Free space by removing old WAL files.', 'sre'),"
               " (2, 'Slow queries', 'Add an index on the filtered columns.', 'dba')")
    return db


@pytest.fixture
def pipeline(articles):
    articles.execute("SELECT rag.create_pipeline('articles', 'articles', 'body',"
                     " title => 'title', metadata => ARRAY['team'])")
    return articles


def test_create_enqueues_a_backfill_and_processing_embeds_it(pipeline):
    db = pipeline
    # The backfill: a check of every row, one append (no writer waits while it is read);
    # the first worker turns it into a job per row.
    assert status(db)["pending"] == 1
    assert chunk_rows(db) == []
    assert process(db) == 2
    rows = chunk_rows(db)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("1", "Free space by removing old WAL files.", "Disk full", {"team": "sre"}),
        ("2", "Add an index on the filtered columns.", "Slow queries", {"team": "dba"}),
    ]
    s = status(db)
    assert (s["pending"], s["leased"], s["failed"], s["done"]) == (0, 0, 0, 2)
    assert s["embedder"] == "local" and s["dimensions"] == 384


def test_writes_only_enqueue_and_chunks_follow_the_table(pipeline):
    db = pipeline
    process(db)
    db.execute("INSERT INTO articles (id, title, body) VALUES (3, 'Backups', 'Run pg_dump.')")
    db.execute("UPDATE articles SET body = 'Delete old WAL with pg_archivecleanup.' WHERE id = 1")
    db.execute("DELETE FROM articles WHERE id = 2")
    # The writes only recorded their keys: the delete hides the row from search at once
    # (its chunks go with the queue), the insert and the update wait for the queue.
    assert {r[0] for r in chunk_rows(db)} == {"1", "2"}
    assert "2" not in searched(db, "index filtered columns")
    assert status(db)["pending"] == 3
    process(db)
    assert contents(db) == {("1", "Delete old WAL with pg_archivecleanup."),
                            ("3", "Run pg_dump.")}


def test_update_of_other_columns_rewrites_nothing(pipeline):
    """A write evaluates none of the pipeline's SQL, so an UPDATE records its rows' keys
    whatever it changed; the worker finds their chunks unchanged and leaves them as they
    are (same rows, nothing embedded)."""
    db = pipeline
    process(db)
    before = db.execute("SELECT id, document_id FROM rag.articles_chunks ORDER BY id").fetchall()
    embedded = status(db)["chunks_embedded"]
    db.execute("UPDATE articles SET views = views + 1")
    db.execute("UPDATE articles SET body = body")
    assert status(db)["pending"] == 2
    process(db)
    assert status(db)["pending"] == 0
    assert db.execute("SELECT id, document_id FROM rag.articles_chunks ORDER BY id"
                      ).fetchall() == before
    assert status(db)["chunks_embedded"] == embedded


def test_bulk_statement_and_truncate(pipeline):
    db = pipeline
    db.execute("INSERT INTO articles (id, title, body)"
               " SELECT g, 'Note ' || g, 'Body of note number ' || g"
               " FROM generate_series(10, 59) g")
    assert status(db)["pending"] == 51  # 50 keys, and the backfill's check of every row
    process(db, batch_size=20)
    assert len(chunk_rows(db)) == 52
    db.execute("TRUNCATE articles")
    assert searched(db, "note number") == []  # at once
    assert status(db)["pending"] == 1  # a check of every row
    process(db)
    assert chunk_rows(db) == []
    assert status(db)["pending"] == 0


def test_primary_key_change_moves_the_chunks(pipeline):
    db = pipeline
    process(db)
    db.execute("UPDATE articles SET id = 100 WHERE id = 1")
    assert [r[0] for r in db.execute("SELECT document_id FROM rag.search('WAL files', 5,"
                                     " pipeline => 'articles')")] == ["2"]
    process(db)
    assert "1" not in {r[0] for r in chunk_rows(db)}
    assert ("100", "Free space by removing old WAL files.") in contents(db)


def test_deleted_before_processing_leaves_nothing(pipeline):
    db = pipeline
    db.execute("DELETE FROM articles WHERE id = 1")
    process(db)
    assert {r[0] for r in chunk_rows(db)} == {"2"}
    assert status(db)["pending"] == 0


def test_sync_mode_embeds_in_the_writers_transaction(articles):
    db = articles
    db.execute("SELECT rag.create_pipeline('articles', 'articles', ARRAY['title', 'body'],"
               " mode => 'sync')")
    db.execute("INSERT INTO articles (id, title, body) VALUES (5, 'Vacuum', 'Run VACUUM.')")
    assert ("5", "Vacuum\n\nRun VACUUM.") in contents(db)
    # Rows that existed before the pipeline are a backfill (a check of every row, for the
    # workers), even in sync mode.
    assert status(db)["pending"] == 1


def test_editing_one_paragraph_embeds_one_chunk(articles):
    db = articles
    db.execute("DELETE FROM articles")
    paragraphs = [f"Paragraph {i} explains step {i} of the failover procedure in some detail."
                  for i in range(6)]
    db.execute("INSERT INTO articles (id, title, body) VALUES (7, 'Failover', %s)",
               ("\n\n".join(paragraphs),))
    db.execute("SELECT rag.create_pipeline('articles', 'articles', 'body',"
               " chunker => '{\"max_tokens\": 20}')")
    process(db)
    first = status(db)
    assert first["chunks_embedded"] == 6
    before = dict(db.execute("SELECT ordinal, embedding::text FROM rag.articles_chunks"
                             " WHERE document_id = '7'").fetchall())
    paragraphs[3] = "Paragraph 3 now says to promote the standby with pg_ctl promote."
    db.execute("UPDATE articles SET body = %s WHERE id = 7", ("\n\n".join(paragraphs),))
    process(db)
    second = status(db)
    assert second["chunks_embedded"] - first["chunks_embedded"] == 1
    assert second["chunks_reused"] - first["chunks_reused"] == 5
    after = dict(db.execute("SELECT ordinal, embedding::text FROM rag.articles_chunks"
                            " WHERE document_id = '7'").fetchall())
    assert [o for o in before if before[o] != after[o]] == [3]


def test_composite_primary_key(db):
    db.execute("CREATE TABLE notes (team text, n integer, body text NOT NULL,"
               " PRIMARY KEY (team, n))")
    db.execute("INSERT INTO notes VALUES ('sre', 1, 'Page the on-call engineer.')")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
    process(db, pipeline="notes")
    rows = db.execute("SELECT document_id, content FROM rag.notes_chunks").fetchall()
    # The key's columns as text, whatever their types, as a JSON array.
    assert rows == [('["sre", "1"]', "Page the on-call engineer.")]
    db.execute("DELETE FROM notes")
    process(db, pipeline="notes")
    assert db.execute("SELECT count(*) FROM rag.notes_chunks").fetchone() == (0,)


def test_content_expression(articles):
    db = articles
    db.execute("SELECT rag.create_pipeline('articles', 'articles',"
               " 'upper(title) || '': '' || body')")
    process(db)
    assert ("2", "SLOW QUERIES: Add an index on the filtered columns.") in contents(db)


def test_drop_pipeline_removes_everything(pipeline):
    db = pipeline
    process(db)
    db.execute("INSERT INTO articles (id, body) VALUES (8, 'captured, never processed')")
    assert queued(db, "articles") == 1
    db.execute("SELECT rag.drop_pipeline('articles')")
    assert db.execute("SELECT to_regclass('rag.articles_chunks_1'),"
                      " to_regclass('rag.articles_chunks')").fetchone() == (None, None)
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'articles'::regclass"
                      " AND NOT tgisinternal").fetchone() == (0,)
    db.execute("INSERT INTO articles (id, body) VALUES (9, 'still writable')")
    assert queued(db, "articles") == 0


def test_defining_a_pipeline_says_nothing_but_its_result(articles):
    """psql shows every NOTICE: "trigger ... does not exist, skipping" from the routine
    DROP ... IF EXISTS in pgask's DDL read like trouble to a first-time user."""
    db = articles
    notices = []
    db.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    db.execute("SELECT rag.create_pipeline('articles', 'articles', 'body', title => 'title')")
    db.execute("SELECT rag.alter_pipeline('articles', metadata => ARRAY['team'])")
    process(db)
    db.execute("SELECT rag.drop_pipeline('articles')")
    assert notices == []


def test_alter_pipeline_rechunks_in_the_background(pipeline):
    db = pipeline
    process(db)
    db.execute("SELECT rag.alter_pipeline('articles', chunker => '{\"method\": \"tokens\","
               " \"max_tokens\": 4}', metadata => ARRAY[]::text[])")
    assert status(db)["pending"] == 2
    assert len(chunk_rows(db)) == 2  # the old chunks answer until the new ones are written
    process(db)
    rows = chunk_rows(db)
    assert len(rows) > 2 and all(r[4] == {} for r in rows)


@pytest.mark.parametrize(("call", "message"), [
    ("rag.create_pipeline('Bad Name', 'articles', 'body')",
     "rag.create_pipeline: name must be a lowercase identifier (a-z, 0-9, _; at most 40 "
     "characters), got 'Bad Name'"),
    ("rag.create_pipeline('p', 'articles', 'views')",
     "rag.create_pipeline: content column views of public.articles must be text-like "
     "(text, varchar, char), not integer"),
    ("rag.create_pipeline('p', 'articles', ARRAY['title', 'nope'])",
     'rag.create_pipeline: content column nope does not exist in public.articles'),
    ("rag.create_pipeline('p', 'articles', 'body', title => 'body\"; DROP TABLE articles; --')",
     'rag.create_pipeline: title column "body""; DROP TABLE articles; --" does not exist in '
     "public.articles"),
    ("rag.create_pipeline('p', 'articles', 'body', mode => 'later')",
     "rag.create_pipeline: mode must be 'async' or 'sync', got 'later'"),
    ("rag.create_pipeline('p', 'articles', 'body', embedder => 'gpt')",
     "rag.create_pipeline: embedder 'gpt' is not registered (see rag.create_embedder; 'local' "
     "is the offline model)"),
    ("rag.create_pipeline('p', 'articles', 'body', chunker => '{\"method\": \"magic\"}')",
     "rag.create_pipeline: chunker.method must be one of "),
    ("rag.create_pipeline('p', 'articles', 'body', chunker => '{\"size\": 3}')",
     "rag.create_pipeline: chunker.size is not a chunker setting"),
    ("rag.create_pipeline('p', 'articles', 'views * 2')",
     "rag.create_pipeline: content expression views * 2 must give text, not integer"),
])
def test_bad_definitions_are_refused_clearly(articles, call, message):
    with pytest.raises(psycopg.Error) as excinfo:
        articles.execute(f"SELECT {call}")
    assert excinfo.value.diag.message_primary.startswith(message)
    assert "Traceback" not in (excinfo.value.diag.context or "")
    assert articles.execute("SELECT count(*) FROM rag.pipelines WHERE name = 'p'"
                            ).fetchone() == (0,)
    assert articles.execute("SELECT to_regclass('articles')").fetchone() == ("articles",)


def test_table_without_primary_key_is_refused(db):
    db.execute("CREATE TABLE loose (body text)")
    with pytest.raises(psycopg.errors.InvalidTableDefinition, match="has no primary key"):
        db.execute("SELECT rag.create_pipeline('loose', 'loose', 'body')")


def test_duplicate_and_unknown_pipeline(pipeline):
    with pytest.raises(psycopg.errors.DuplicateObject, match="pipeline articles already exists"):
        pipeline.execute("SELECT rag.create_pipeline('articles', 'articles', 'body')")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=r"rag.search: pipeline 'nope' does not exist \(known: articles, "
                             r"documents\)"):
        pipeline.execute("SELECT * FROM rag.search('x', 5, pipeline => 'nope')")


def test_search_a_pipeline(pipeline):
    process(pipeline)
    rows = pipeline.execute("SELECT document_id, title, source FROM"
                            " rag.search('running out of disk space', 1,"
                            " pipeline => 'articles')").fetchall()
    assert rows == [("1", "Disk full", "articles:1")]


@pytest.mark.parametrize(("args", "message"), [
    ("batch_size => 0", "rag.process_queue: batch_size must be between 1 and 10000, got 0"),
    ("max_seconds => -1", "rag.process_queue: max_seconds must be >= 0, got -1"),
    ("lease_seconds => 0", "rag.process_queue: lease_seconds must be > 0, got 0"),
    ("pipeline => 'nope'", "rag.process_queue: pipeline 'nope' does not exist"),
])
def test_process_queue_arguments(db, args, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as excinfo:
        db.execute(f"CALL rag.process_queue({args})")
    assert excinfo.value.diag.message_primary.startswith(message)


def test_jsonb_metadata_columns_contribute_their_keys(db):
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text, team text, extra jsonb)")
    db.execute("""INSERT INTO notes VALUES (1, 'Disk full on db1.', 'dba',
                  '{"team": "ignored", "severity": 2}'), (2, 'Lunch.', 'ops', '[1, 2]'),
                  (3, 'Nothing.', NULL, NULL)""")
    db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body',"
               " metadata => ARRAY['extra', 'team'])")
    process(db, "notes")
    rows = dict(db.execute("SELECT document_id, metadata FROM rag.notes_chunks").fetchall())
    assert rows == {"1": {"team": "dba", "severity": 2},  # the plain column wins a clash
                    "2": {"team": "ops", "extra": [1, 2]},
                    "3": {"team": None, "extra": None}}


def test_a_title_longer_than_the_model_sees_is_cut_for_embedding_only(articles):
    title = "A very long title " * 120  # far more than the model's 254 word pieces
    articles.execute("UPDATE articles SET title = %s WHERE id = 1", (title,))
    articles.execute("SELECT rag.create_pipeline('articles', 'articles', 'body',"
                     " title => 'title')")
    process(articles)
    assert status(articles)["failed"] == 0
    titles = {row[3] for row in chunk_rows(articles) if row[0] == "1"}
    assert titles == {title}  # stored whole; only the embedded prefix is cut
