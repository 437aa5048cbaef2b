"""Metrics against hand-computed values, data set readers, and `pgask eval` end to end."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgask_measure.evaluation import (
    documents_in_order,
    evaluate_run,
    exact_match,
    f1_score,
    load_beir,
    load_squad,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

REPO = Path(__file__).resolve().parents[2]

# Ranked: d3 (not relevant), d1 (rel 1), d2 (rel 2), d5 (not judged); d4 (rel 1) missed.
RANKED = ["d3", "d1", "d2", "d5"]
JUDGED = {"d1": 1, "d2": 2, "d4": 1}


def test_ndcg_by_hand():
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)  # 1.63093
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # 3.13093
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(0.520909, abs=1e-6)
    assert ndcg_at_k(RANKED, JUDGED, 1) == 0.0
    assert ndcg_at_k(["d2", "d1", "d4"], JUDGED, 10) == pytest.approx(1.0)


def test_recall_and_mrr_by_hand():
    assert recall_at_k(RANKED, JUDGED, 10) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKED, JUDGED, 10) == 0.5
    assert mrr_at_k(RANKED, JUDGED, 1) == 0.0
    assert recall_at_k(RANKED, {"d9": 0}, 10) == 0.0  # nothing relevant judged


def test_run_is_averaged_over_judged_queries():
    run = {"q1": RANKED, "q2": ["d7"], "q3": ["x"]}
    qrels = {"q1": JUDGED, "q2": {"d7": 1}}
    metrics = evaluate_run(run, qrels)
    assert metrics["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["recall@100"] == pytest.approx((2 / 3 + 1.0) / 2)
    with pytest.raises(ValueError, match="no query in the run has relevance judgements"):
        evaluate_run({"q3": ["x"]}, qrels)


def test_documents_are_ranked_by_their_best_chunk():
    assert documents_in_order(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def write_beir(folder: Path, docs: dict, queries: dict, qrels: list, split="test"):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in docs.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": i, "text": x}) + "\n" for i, x in queries.items()))
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))


DOCS = {
    "vac": ("VACUUM", "VACUUM reclaims storage occupied by dead tuples after updates."),
    "idx": ("Indexes", "A multicolumn B-tree index speeds up queries on two columns."),
    "wal": ("WAL", "Write-ahead logging makes committed transactions durable after a crash."),
    "cat": ("Cats", "Cats sleep for most of the day and purr when they are content."),
}
QUERIES = {"1": "How is space of dead rows reclaimed?", "2": "Why do cats purr?",
           "3": "unjudged query"}
QRELS = [("1", "vac", 1), ("2", "cat", 1)]


def test_load_beir(tmp_path):
    write_beir(tmp_path / "set", DOCS, QUERIES, QRELS, split="train")
    dataset = load_beir(tmp_path / "set")  # the only split there is
    assert dataset.name == "set"
    assert dataset.corpus["idx"] == DOCS["idx"]
    assert dataset.qrels == {"1": {"vac": 1}, "2": {"cat": 1}}
    with pytest.raises(ValueError, match=r"has no qrels/test.tsv \(qrels\)"):
        load_beir(tmp_path / "set", "test")
    with pytest.raises(ValueError, match="does not exist"):
        load_beir(tmp_path / "nowhere")


def test_squad_reader_and_scores(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    squad = load_squad(path)
    assert len(squad.contexts) == 2 and len(squad.questions) == 3
    assert squad.questions[0].answers == ("Normandy",)
    assert squad.questions[1].answers == ()  # "c", the unanswerable one
    assert exact_match("the Normandy!", ["Normandy"]) == 1.0
    # "the" is dropped: precision 1/3, recall 1.
    assert f1_score("Rollo led the Vikings", ["Rollo"]) == pytest.approx(0.5)
    assert f1_score("nothing shared", ["Rollo"]) == 0.0


SQUAD = {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [
    {"context": "The Normans gave their name to Normandy, a region in France. They were "
                "descended from Norse raiders and pirates.",
     "qas": [{"id": "a", "question": "What region did the Normans give their name to?",
              "answers": [{"text": "Normandy", "answer_start": 31}], "is_impossible": False},
             {"id": "c", "question": "What is the airspeed velocity of a swallow?",
              "answers": [], "is_impossible": True}]},
    {"context": "Rollo was the leader of the Vikings who settled in Normandy.",
     "qas": [{"id": "b", "question": "Who was the leader of the Vikings?",
              "answers": [{"text": "Rollo", "answer_start": 0}], "is_impossible": False}]},
]}]}


def pgask(url, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python" / "src"), DATABASE_URL=url)
    return subprocess.run([sys.executable, "-m", "pgask.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_eval_end_to_end_and_cached(db, db_url, tmp_path):
    write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS)
    first = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), "--json", "--k", "10")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["dataset"] == "tiny"
    assert set(report["results"]) == {"vector", "keyword", "hybrid"}
    for mode in ("vector", "keyword", "hybrid"):
        assert report["results"][mode] == {"ndcg@10": 1.0, "recall@10": 1.0,
                                           "recall@100": 1.0, "mrr@10": 1.0}, mode
    assert report["settings"]["queries"] == 2 and report["settings"]["split"] == "test"
    assert "4 documents loaded" in first.stderr
    (embedded,) = db.execute("SELECT sum(chunks_embedded) FROM rag.pipeline_status"
                             " WHERE pipeline LIKE 'eval_%'").fetchone()

    second = pgask(db_url, "eval", "--dataset", str(tmp_path / "tiny"), "--k", "10")
    assert second.returncode == 0, second.stderr
    assert "documents loaded" not in second.stderr
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
