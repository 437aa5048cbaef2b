"""Our own question sets (tests/data/pgdocs, tests/data/runbooks) and the corpus builder that
turns the files they judge into a BEIR corpus at evaluation time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgask.loaders import load_file
from pgask_measure.eval_corpus import build_corpus, corpus_digest, corpus_source
from pgask_measure.evaluation import load_beir

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def question_set(name: str):
    """The set read through the same reader `pgask eval` uses, with an empty corpus."""
    return load_beir(DATA / name, "test", corpus={})


@pytest.mark.parametrize(("name", "at_least"), [("pgdocs", 60), ("runbooks", 25)])
def test_question_set_parses(name, at_least):
    dataset = question_set(name)
    assert len(dataset.queries) >= at_least
    # Every question is judged, every judgement names a question, all relevant (score 1).
    assert set(dataset.qrels) == set(dataset.queries)
    assert all(judged and set(judged.values()) == {1} for judged in dataset.qrels.values())
    texts = [t.strip().lower() for t in dataset.queries.values()]
    assert len(set(texts)) == len(texts), "a question appears twice"
    source = corpus_source(DATA / name)
    assert source is not None and source["include"]


def gold_documents_missing_from_corpus(name: str, root: Path) -> tuple[list[str], int]:
    source = corpus_source(DATA / name)
    corpus = build_corpus(root, source["include"], source.get("exclude", ()))
    judged = {doc for docs in question_set(name).qrels.values() for doc in docs}
    return sorted(judged - set(corpus)), len(corpus)


def test_every_gold_document_of_pgdocs_is_in_the_built_corpus():
    # Debian's postgresql-doc-15, which make setup installs: the Makefile's DEMO_PAGES.
    root = Path(corpus_source(DATA / "pgdocs")["root"])
    if not root.is_dir():
        pytest.skip(f"{root} is not here (Debian's postgresql-doc-15: run make setup)")
    missing, size = gold_documents_missing_from_corpus("pgdocs", root)
    assert missing == []
    assert size == 214


def test_every_gold_document_of_runbooks_is_in_the_built_corpus(shared_data):
    # The runbooks live beside the checkout (CI's ../shared); EVAL_RUNBOOKS overrides the
    # folder as it does for make.
    root = Path(os.environ.get("EVAL_RUNBOOKS") or shared_data / "data" / "runbooks")
    missing, _ = gold_documents_missing_from_corpus("runbooks", root)
    assert missing == []


def test_build_corpus_reads_files_as_ingest_does(tmp_path):
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "vacuum.md").write_text("# Vacuum\n\nVACUUM reclaims space.\n")
    (tmp_path / "index.html").write_text(
        "<html><head><title>Indexes</title></head><body><h1>Indexes</h1>"
        "<p>A B-tree &amp; a hash.</p><script>ignored()</script></body></html>")
    (tmp_path / "notes.txt").write_text("plain notes")
    (tmp_path / "draft.md").write_text("# Draft\n\nnot yet")
    (tmp_path / "LICENSE").write_text("no suffix: not a document")

    corpus = build_corpus(tmp_path, include=["*.md", "*.html"], exclude=["draft.md"])
    assert list(corpus) == ["guides/vacuum.md", "index.html"]  # ids: paths under the root
    for doc_id, (title, text) in corpus.items():
        loaded = load_file(tmp_path / doc_id)
        assert (title, text) == (loaded.title, loaded.content)
    assert corpus["index.html"][0] == "Indexes"
    assert "A B-tree & a hash." in corpus["index.html"][1]
    assert "ignored()" not in corpus["index.html"][1]
    assert set(build_corpus(tmp_path)) == {"guides/vacuum.md", "index.html", "notes.txt",
                                           "draft.md"}


def test_build_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match=f"corpus folder {tmp_path / 'none'} does not exist"):
        build_corpus(tmp_path / "none")
    (tmp_path / "a.md").write_text("# A\n\ntext")
    with pytest.raises(ValueError, match=r"no file under .* matches include \['\*.pdf'\]"):
        build_corpus(tmp_path, include=["*.pdf"])


def test_corpus_digest_follows_the_text():
    one = {"a.md": ("A", "text")}
    assert corpus_digest(one) == corpus_digest(dict(one))
    assert corpus_digest(one) != corpus_digest({"a.md": ("A", "other text")})
    assert corpus_digest(one) != corpus_digest({"b.md": ("A", "text")})


def test_corpus_source_errors(tmp_path):
    assert corpus_source(tmp_path) is None
    (tmp_path / "corpus-source.json").write_text('{"include": ["*.md"]}')
    with pytest.raises(ValueError, match='expected an object with a "root" folder'):
        corpus_source(tmp_path)
    (tmp_path / "corpus-source.json").write_text('{"root": ".", "include": "*.md"}')
    with pytest.raises(ValueError, match=r'"include" must be a list of globs'):
        corpus_source(tmp_path)


def pgask(url, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python" / "src"), DATABASE_URL=url)
    return subprocess.run([sys.executable, "-m", "pgask.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_eval_builds_the_corpus_from_files(db, db_url, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vacuum.md").write_text("# Vacuum\n\nVACUUM reclaims the space of dead rows.\n")
    (docs / "cats.md").write_text("# Cats\n\nCats purr when they are content.\n")
    (docs / "skip.txt").write_text("dead rows dead rows dead rows")
    folder = tmp_path / "set"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "1", "text": "how is the space of dead rows reclaimed"}) + "\n"
        + json.dumps({"_id": "2", "text": "why do cats purr"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\tvacuum.md\t1\n2\tcats.md\t1\n")
    (folder / "corpus-source.json").write_text(
        json.dumps({"root": str(tmp_path / "elsewhere"), "include": ["*.md"]}))

    missing = pgask(db_url, "eval", "--dataset", str(folder), "-q", "--k", "10")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"pgask eval: corpus folder {tmp_path / 'elsewhere'}"
                                      " does not exist")
    result = pgask(db_url, "eval", "--dataset", str(folder), "--corpus-root", str(docs),
                   "--json", "-q", "--k", "10")
    assert result.returncode == 0, result.stderr
    assert "2 documents loaded" in result.stderr  # skip.txt is not included
    report = json.loads(result.stdout)
    for mode in ("vector", "keyword", "hybrid"):
        assert report["results"][mode]["ndcg@10"] == 1.0, mode
    assert report["settings"]["titles"] == "column"

    # Title handling, measured: the title as the body's first line is another corpus.
    body = pgask(db_url, "eval", "--dataset", str(folder), "--corpus-root", str(docs),
                 "--titles", "body", "--json", "-q", "--k", "10")
    assert body.returncode == 0, body.stderr
    assert "2 documents loaded" in body.stderr
    pipeline = json.loads(body.stdout)["settings"]["pipeline"]
    table = pipeline.replace("eval_", "rag_eval.corpus_")
    assert db.execute(f"SELECT title, body FROM {table} WHERE id = 'cats.md'").fetchone() == (
        "", "Cats\n\n# Cats\n\nCats purr when they are content.\n")
    again = pgask(db_url, "eval", "--dataset", str(folder), "--corpus-root", str(docs),
                  "--titles", "none", "-q", "--k", "10")
    assert again.returncode == 0 and "2 documents loaded" in again.stderr
