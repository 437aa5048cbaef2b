"""What a BI tool sees of pgask (docs/dashboard.md), through the drivers BI tools use:
SQLAlchemy's inspector finds a comment on every view and column, pandas gets numbers (not
decimals as `object`), and the dashboard's queries, run as a role given
rag.grant_usage(role, 'dashboard'), return the figures of a known answer log."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool
from test_docs import sql_blocks

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "dashboard.md"
BI_VIEWS = ("answers_daily", "top_unanswered", "document_usage", "answer_feedback_totals",
            "pipeline_status", "dead_letters", "eval_summary")


@pytest.fixture
def engine(db_url):
    engine = sqlalchemy.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"),
                                      poolclass=NullPool)
    yield engine
    engine.dispose()


def _log(db, asker, day, question, mode, total_ms, sources=(), tokens=(None, None), cost=None):
    (answer_id,) = db.execute(
        "INSERT INTO rag.answer_log (asked_at, asked_by, pipeline, question, answer, mode,"
        " grounded, total_ms, prompt_tokens, completion_tokens, cost, currency,"
        " cited_document_ids, cited_sources) VALUES (%s::date + time '12:00', %s, 'documents',"
        " %s, 'an answer', %s, true, %s, %s, %s, %s, 'USD', %s, %s) RETURNING id",
        (day, asker, question, mode, total_ms, *tokens, cost,
         [f"id-{s}" for s in sources], list(sources))).fetchone()
    return answer_id


@pytest.fixture
def answers(db, roles):
    """Four answers of two roles over two days (written as the superuser, who bypasses the
    log's row-level security), and one verdict."""
    alice, bob = roles.make("alice"), roles.make("bob")
    day1 = datetime.date.today() - datetime.timedelta(days=2)
    day2 = day1 + datetime.timedelta(days=1)
    first = _log(db, alice, day1, "How do I vacuum?", "generated", 100, ["a.md"],
                 (1000, 100), 0.25)
    _log(db, alice, day1, "What is X?", "no_answer", 300)
    _log(db, alice, day2, "Where is the WAL?", "extractive", 200, ["a.md", "b.md"])
    _log(db, bob, day2, " what is  x? ", "no_answer", 400)
    db.execute("INSERT INTO rag.answer_feedback (answer_id, helpful, given_by)"
               " VALUES (%s, true, %s)", (first, alice))
    return day1, day2


def test_every_view_and_column_has_a_comment(engine):
    inspector = sqlalchemy.inspect(engine)
    views = inspector.get_view_names(schema="rag")
    assert set(BI_VIEWS) <= set(views)
    missing = [v for v in views if not inspector.get_table_comment(v, schema="rag")["text"]]
    # The generated chunk views (one per pipeline) have the chunk table's columns.
    missing += [f"{v}.{c['name']}" for v in views if not v.endswith("_chunks")
                for c in inspector.get_columns(v, schema="rag") if not c.get("comment")]
    assert missing == []


def test_the_bi_views_have_no_decimal_columns(engine):
    """numeric arrives as decimal.Decimal (pandas: object); counts must be integers and
    measures floats."""
    inspector = sqlalchemy.inspect(engine)
    decimal = [f"{v}.{c['name']}" for v in BI_VIEWS for c in inspector.get_columns(v, "rag")
               if isinstance(c["type"], sqlalchemy.Numeric)
               and not isinstance(c["type"], sqlalchemy.Float)]
    assert decimal == []


def _queries():
    """The dashboard's queries, from the page, by the line before each block."""
    text = DASHBOARD.read_text(encoding="utf-8")
    found = {}
    for block in sql_blocks(DASHBOARD):
        before = text.splitlines()[:block.line - 2]
        title = next(line for line in reversed(before) if line.strip())
        found[re.sub(r"\s*\(.*", "", title).rstrip(":")] = block.sql
    return found


def _frame(engine, role, query):
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET ROLE {role}")
        return pd.read_sql(sqlalchemy.text(query), conn)


def test_a_dashboard_role_sees_every_answer_in_numbers(db, roles, engine, answers):
    day1, day2 = answers
    queries = _queries()
    assert set(queries) >= {"Answers per day", "Unanswered questions", "Sources used",
                            "Latency per day", "Cost per day"}
    grafana = roles.make("grafana")
    # What docs/operations.md used to say: a plain grant shows the role only its own answers.
    db.execute(f"GRANT SELECT ON rag.answers_daily TO {grafana}")
    assert _frame(engine, grafana, queries["Answers per day"]).empty
    assert "SELECT rag.grant_usage('grafana', 'dashboard');" in DASHBOARD.read_text()
    db.execute("SELECT rag.grant_usage(%s, 'dashboard')", (grafana,))

    frames = {name: _frame(engine, grafana, q) for name, q in queries.items()}
    for name, frame in frames.items():
        assert not frame.empty, name
        for column in frame.columns:
            if column not in ("day", "question", "source", "last_asked", "last_cited",
                              "pipeline", "broken"):
                assert frame[column].dtype.kind in "iuf", (name, column, frame[column].dtype)

    per_day = frames["Answers per day"]
    assert per_day.to_dict("records") == [
        {"day": day1, "answers": 2, "generated": 1, "extractive": 0, "unanswered": 1},
        {"day": day2, "answers": 2, "generated": 0, "extractive": 1, "unanswered": 1}]
    gaps = frames["Unanswered questions"]
    assert gaps[["question", "times_asked", "askers"]].to_dict("records") == [
        {"question": "what is x?", "times_asked": 2, "askers": 2}]
    sources = frames["Sources used"]
    assert sources[["source", "answers", "helpful_feedback"]].to_dict("records") == [
        {"source": "a.md", "answers": 2, "helpful_feedback": 1},
        {"source": "b.md", "answers": 1, "helpful_feedback": 0}]
    latency = frames["Latency per day"]
    assert latency[["avg_ms", "p95_ms"]].to_dict("records") == [
        {"avg_ms": 200.0, "p95_ms": 290.0}, {"avg_ms": 300.0, "p95_ms": 390.0}]
    cost = frames["Cost per day"]
    assert cost[["cost", "prompt_tokens"]].to_dict("records") == [
        {"cost": 0.25, "prompt_tokens": 1000}, {"cost": 0.0, "prompt_tokens": 0}]
    assert frames["And the health of the pipelines"]["pipeline"].tolist() == ["documents"]

    db.execute("SELECT rag.revoke_usage(%s, 'dashboard')", (grafana,))
    assert _frame(engine, grafana, queries["Answers per day"]).empty
