"""`pgask demo` (the end of `make demo`): the first questions of a judged set, answered with
each citation marked gold or not, then the set's figures, on a real database."""

import json

from commands import pgask

from pgask_measure.demo import demo_questions
from pgask_measure.evaluation import BeirDataset


def test_the_rule_is_the_first_judged_questions_in_file_order():
    dataset = BeirDataset("s", {}, {"q3": "c", "q1": "a", "q9": "unjudged", "q2": "b"},
                          {"q1": {"d": 1}, "q2": {"d": 1}, "q3": {"d": 1}})
    assert demo_questions(dataset, 2) == [("q3", "c"), ("q1", "a")]
    assert [qid for qid, _ in demo_questions(dataset, 5)] == ["q3", "q1", "q2"]


def test_demo_marks_gold_citations_and_prints_the_sets_figures(db, db_url, tmp_path):
    root = tmp_path / "pages"
    root.mkdir()
    (root / "vacuum.md").write_text(
        "# VACUUM\n\nVACUUM reclaims storage occupied by dead tuples. Run VACUUM after large "
        "deletes so that the space can be reused by new rows.\n")
    (root / "indexes.md").write_text(
        "# Multicolumn indexes\n\nA multicolumn index is created with CREATE INDEX idx ON "
        "orders (customer_id, day); it serves queries on its leading columns.\n")
    (root / "gin.md").write_text(
        "# GIN\n\nA GIN index makes full text search over tsvector columns fast.\n")
    assert pgask("ingest", "-q", str(root), database_url=db_url).returncode == 0

    qset = tmp_path / "set"
    (qset / "qrels").mkdir(parents=True)
    questions = [("a1", "How do I reclaim the storage of dead tuples after large deletes?"),
                 # judged against a page that does not answer it: its citation is not gold
                 ("a2", "How do I create an index on two columns of orders?"),
                 ("a3", "What makes full text search over tsvector fast?")]
    (qset / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in questions))
    (qset / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\na1\tvacuum.md\t1\na2\tgin.md\t1\na3\tgin.md\t1\n")
    (qset / "corpus-source.json").write_text(json.dumps({"root": str(root), "include": ["*"]}))

    result = pgask("demo", "--set", str(qset), "--questions", "2", database_url=db_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Q (a1): How do I reclaim" in out and "Q (a2)" in out
    assert "Q (a3)" not in out  # two questions asked, the first two in file order
    first, second = out.split("Q (a2)")[0], out.split("Q (a2)")[1].split("All 3")[0]
    assert "vacuum.md, characters" in first and "  gold\n" in first
    assert "-> a gold page is cited (gold: vacuum.md)" in first
    assert "not a gold page" in second and "-> no cited page is a gold page" in second
    assert "All 3 questions of" in out and "a gold page among the first 5 documents for" in out
    assert "nDCG@10 " in out


def test_demo_refuses_a_bad_count(db_url):
    result = pgask("demo", "--questions", "0", database_url=db_url)
    assert result.returncode == 1
    assert "--questions must be between 1 and 20, got 0" in result.stderr
