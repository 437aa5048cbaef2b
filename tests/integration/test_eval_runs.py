"""`pgask eval` and `pgask eval-answers` end to end, against a real database."""

import json
import re

import commands
import pytest
from samples import DOCS, QRELS, QUERIES, SQUAD, write_beir


def pgask(url, *args):
    return commands.pgask(*args, database_url=url)


def test_eval_end_to_end_and_cached(db, db_url, tmp_path):
    write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)
    # By default what an application gets: rag.search(question, 10) with its own defaults,
    # so recall@100 (more documents than were asked for) is not measured.
    first = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["dataset"] == "tiny"
    assert set(report["results"]) == {"vector", "keyword", "hybrid"}
    for mode in ("vector", "keyword", "hybrid"):
        assert report["results"][mode] == {"ndcg@10": 1.0, "recall@10": 1.0,
                                           "mrr@10": 1.0}, mode
    assert report["settings"]["queries"] == 2 and report["settings"]["split"] == "test"
    assert (report["settings"]["search_depth"], report["settings"]["depth"],
            report["settings"]["options"]) == ("production", 10, {})
    assert "4 documents loaded" in first.stderr
    (embedded,) = db.execute("SELECT sum(chunks_embedded) FROM rag.pipeline_status"
                             " WHERE pipeline LIKE 'eval_%'").fetchone()

    # --depth deep: 200 chunks, ef_search 200, one candidate per result, as before issue 32.
    second = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), "--depth", "deep")
    assert second.returncode == 0, second.stderr
    assert "documents loaded" not in second.stderr
    assert "search_depth=deep  depth=200" in second.stdout.splitlines()[0]
    assert second.stdout.splitlines()[1].split() == ["mode", "ndcg@10", "recall@10",
                                                     "recall@100", "mrr@10"]
    assert db.execute("SELECT sum(chunks_embedded) FROM rag.pipeline_status"
                      " WHERE pipeline LIKE 'eval_%'").fetchone() == (embedded,)
    rows = db.execute("SELECT kind, dataset, mode, ndcg_10, queries FROM rag.eval_summary"
                      " WHERE mode = 'vector'").fetchall()
    assert rows == [("retrieval", "tiny", "vector", 1.0, 2)] * 2


def test_eval_with_another_chunker_is_a_separate_corpus(db, db_url, tmp_path):
    write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)
    for chunker in ("{}", '{"method": "tokens", "max_tokens": 8}'):
        result = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), "--chunker",
                       chunker, "-q", "--k", "10")
        assert result.returncode == 0, result.stderr
    assert db.execute("SELECT count(*) FROM rag.pipelines WHERE name LIKE 'eval_%'"
                      ).fetchone() == (2,)


@pytest.mark.parametrize(("args", "message"), [
    (["--modes", "fuzzy"], "pgask eval: --modes: fuzzy not available; choose from vector, "
                           "keyword, hybrid, hybrid+rerank"),
    (["--options", "{1"], "pgask eval: --options must be JSON: Expecting property name "
                          "enclosed in double quotes"),
    (["--chunker", "{bad"], "pgask eval: --chunker must be JSON: Expecting property name "
                            "enclosed in double quotes"),
    (["--k", "5"], "pgask eval: --k must be between 10 and 1000, got 5"),
])
def test_eval_bad_arguments(db_url, tmp_path, args, message):
    write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)
    result = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), *args)
    assert result.returncode == 1
    assert result.stderr.strip() == message


def test_eval_missing_dataset(db_url, tmp_path):
    result = pgask(db_url, "eval", "--dataset", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"pgask eval: dataset folder {tmp_path / 'none'} does not exist"


def test_eval_answers_end_to_end(db, db_url, tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    result = pgask(db_url, "eval-answers", "--squad", str(path), "--json", "-q")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = report["results"]["extractive"]
    assert set(metrics) == {"exact_match", "f1", "contains_answer", "answered_rate",
                            "no_answer_accuracy"}
    assert report["settings"]["answerable"] == 2 and report["settings"]["unanswerable"] == 1
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    # Extractive answers are whole sentences: they contain the answer, so F1 is above zero,
    # but never match it exactly.
    assert metrics["answered_rate"] == 1.0 and metrics["f1"] > 0 and metrics["exact_match"] == 0
    assert metrics["no_answer_accuracy"] == 1.0
    assert db.execute("SELECT kind, mode FROM rag.eval_summary").fetchall() == [
        ("answers", "extractive")]


def test_eval_answers_with_a_model_reports_per_answer_details(db, db_url, tmp_path,
                                                              chat_server):
    # The loopback server echoes the prompt back: a reply with claims of all kinds.
    db.execute("SELECT rag.create_llm('echo', 'openai', 'echo-1', %s)", (chat_server.url,))
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    details = tmp_path / "details.jsonl"
    result = pgask(db_url, "eval-answers", "--squad", str(path), "--model", "echo",
                   "--details", str(details), "--json", "-q")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = report["results"]["llm:echo"]
    lines = [json.loads(line) for line in details.read_text().splitlines()]
    assert [line["question"] for line in lines] == [
        q["question"] for a in SQUAD["data"] for p in a["paragraphs"] for q in p["qas"]]
    replies = [line["reply"] for line in lines if line["reply"] is not None]
    assert len(replies) == report["settings"]["generated"] == 3
    assert all(line["passages"] and set(line) >= {"answer", "grounded", "problems", "claims",
                                                  "gold", "mode"} for line in lines)
    assert metrics["citation_rate"] == sum(bool(re.search(r"\[\d+\]", r)) for r in replies) / 3
    claims = [c for line in lines for c in line["claims"]]
    assert claims and metrics["claims_supported"] == sum(c["supported"] for c in claims)
    assert metrics["claims_unsupported"] == sum(not c["supported"] for c in claims)
