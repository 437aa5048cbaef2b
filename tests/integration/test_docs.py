"""Every ```sql example in docs/*.md and README.md runs against a real database, so the docs
cannot rot.

Each file gets a fresh database with pgask installed; its blocks run in order, statement by
statement (autocommit, so CALL rag.process_queue() may commit), as a reader would paste them.
A block that needs something a test machine does not have (a cloud provider, pg_cron) is
preceded by `<!-- docs-test: skip (the reason) -->`; keep those few. The loopback servers of
the test suite stand in for the ports the docs use: `pgask serve-embeddings` (8088),
`pgask serve-llm` (8091) and a vLLM-style reranker (8092).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^```sql\s*$\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
MAX_SKIPPED = 12  # across all files: a skip is a promise nobody checks


@dataclass
class Block:
    path: Path
    line: int
    sql: str
    skip: str | None


def sql_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").splitlines()
        marker = SKIP.search(before[-1]) if before else None
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 2, match["body"],
                            marker["reason"] if marker else None))
    return blocks


def split_statements(script: str) -> list[str]:
    """The statements of an SQL script: splits on top-level semicolons, not on those inside
    quotes, dollar-quoted bodies or comments; drops comment-only pieces."""
    statements, current, i, n = [], [], 0, len(script)
    while i < n:
        ch = script[i]
        if script.startswith("--", i):
            end = script.find("\n", i)
            end = n if end < 0 else end
            current.append(script[i:end])
            i = end
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(script[i:end])
            i = end
        elif ch in "'\"":
            j = i + 1
            while j < n:
                if script[j] == ch and script[j + 1:j + 2] == ch:
                    j += 2
                elif script[j] == ch:
                    break
                else:
                    j += 1
            current.append(script[i:j + 1])
            i = j + 1
        elif ch == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", script[i:])):
            end = script.find(tag.group(), i + len(tag.group()))
            end = n if end < 0 else end + len(tag.group())
            current.append(script[i:end])
            i = end
        elif ch == ";":
            statements.append("".join(current))
            current, i = [], i + 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    meaningful = []
    for statement in statements:
        code = re.sub(r"--[^\n]*", "", statement).strip()
        if code:
            meaningful.append(statement.strip())
    return meaningful


def test_the_splitter_keeps_quoted_semicolons_together():
    script = ("SELECT 'a;b'; -- c;d\nDO $$ BEGIN PERFORM 1; END $$;\n"
              "SELECT \"x;y\" FROM t /* ; */;\n-- only a comment;\n")
    assert split_statements(script) == [
        "SELECT 'a;b'", "-- c;d\nDO $$ BEGIN PERFORM 1; END $$",
        'SELECT "x;y" FROM t /* ; */']


def test_the_docs_have_examples_and_few_skips():
    blocks = [b for path in FILES for b in sql_blocks(path)]
    assert len([b for b in blocks if not b.skip]) >= 40
    skipped = [f"{b.path.name}:{b.line} ({b.skip})" for b in blocks if b.skip]
    assert len(skipped) <= MAX_SKIPPED, skipped


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_sql_example_runs(path, db, embedding_server, rerank_server):
    substitutions = {
        "http://127.0.0.1:8088/v1": embedding_server.url,
        "http://127.0.0.1:8091/v1": embedding_server.url,  # it answers chat completions too
        "http://127.0.0.1:8092/v1": f"{rerank_server.url}/v1",
    }
    blocks = [b for b in sql_blocks(path) if not b.skip]
    if not blocks:
        pytest.skip(f"{path.name} has no runnable SQL example")
    for block in blocks:
        script = block.sql
        for placeholder, url in substitutions.items():
            script = script.replace(placeholder, url)
        for statement in split_statements(script):
            try:
                db.execute(statement)
            except psycopg.Error as exc:
                pytest.fail(f"{path.relative_to(REPO)}, block at line {block.line}:\n"
                            f"{statement}\n-> {type(exc).__name__}: {exc}")


PYTHON_FENCE = re.compile(r"^```python\s*$\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
CLIENTS_DSN = "postgresql://app@db.internal/prod"  # what docs/clients.md connects to


def test_the_client_examples_run(db, db_url):
    """docs/clients.md's Python examples run too: in order, in one namespace (as a reader
    would paste them into one session), after the page's SQL, against the real libraries;
    `my_llm` is LlamaIndex's MockLLM."""
    pytest.importorskip("langchain_core", reason="pip install 'pgask[langchain]'")
    pytest.importorskip("llama_index.core", reason="pip install 'pgask[llamaindex]'")
    from llama_index.core.llms import MockLLM

    path = REPO / "docs" / "clients.md"
    for block in sql_blocks(path):
        for statement in split_statements(block.sql):
            db.execute(statement)
    text = path.read_text(encoding="utf-8")
    namespace: dict = {"my_llm": MockLLM()}
    examples = list(PYTHON_FENCE.finditer(text))
    assert len(examples) >= 6
    for match in examples:
        line = text.count("\n", 0, match.start()) + 2
        code = compile(match["body"].replace(CLIENTS_DSN, db_url), f"{path.name}:{line}", "exec")
        exec(code, namespace)  # noqa: S102 (the page's own examples)
    # What the last examples left: the LlamaIndex retriever's nodes, and the ticket every
    # store added (id 3) deleted again.
    assert namespace["nodes"] and namespace["nodes"][0].node.ref_doc_id == "1"
    assert db.execute("SELECT array_agg(id ORDER BY id) FROM tickets").fetchone() == ([1, 2],)


def test_the_sql_reference_names_every_public_function_and_view(db):
    """docs/sql-reference.md covers the whole public API: a new function or view without an
    entry (and its example) fails here."""
    reference = (REPO / "docs" / "sql-reference.md").read_text(encoding="utf-8")
    public = db.execute(
        "SELECT 'rag.' || p.proname FROM pg_proc AS p"
        " WHERE p.pronamespace = 'rag'::regnamespace AND p.proname NOT LIKE '\\_%'"
        " AND p.prorettype <> 'trigger'::regtype"
        " UNION SELECT 'rag.' || c.relname FROM pg_class AS c"
        " WHERE c.relnamespace = 'rag'::regnamespace AND c.relkind = 'v'"
        " AND c.relname NOT LIKE '%\\_chunks'"
        " UNION SELECT 'rag_answer' ORDER BY 1").fetchall()
    assert len(public) >= 30
    missing = [name for (name,) in public if not re.search(rf"{re.escape(name)}\b", reference)]
    assert not missing, f"docs/sql-reference.md does not document: {missing}"
