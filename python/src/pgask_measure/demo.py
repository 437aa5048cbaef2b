"""`pgask demo` (what `make demo` ends with): a few questions of a judged set answered on this
database, each citation marked gold or not, then the whole set's retrieval figures, so a
newcomer sees what pgask does and how well, not one question that happens to work.

The rule that picks the questions, written here so nobody picks them because they work: the
first N questions of the set's queries.jsonl, in file order, that have judgements (pgdocs:
pg001, pg002, pg003). The figures use rag.search with its defaults (what an application gets),
over the documents already in the pipeline; `make eval` measures the same set on a pipeline of
its own (docs/quality.md)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from pgask.answering.display import print_answer
from pgask_measure.eval_corpus import corpus_source
from pgask_measure.evaluation import documents_in_order, evaluate_run, load_beir

DEFAULT_QUESTIONS = 3
# Documents ranked per question for the set's figures: nDCG@10 and MRR@10 look at ten.
FIGURE_DEPTH = 10


def demo_questions(dataset, count: int) -> list[tuple[str, str]]:
    """The rule: the first ``count`` judged questions in file order."""
    judged = [(qid, text) for qid, text in dataset.queries.items() if dataset.qrels.get(qid)]
    return judged[:count]


def page_id(source: str, root: Path) -> str:
    """A document's id in the set: its path under the corpus root (what the qrels name)."""
    try:
        return Path(source).relative_to(root).as_posix()
    except ValueError:
        return source


def run_demo(conn: psycopg.Connection, folder: str, *, root: str | None = None,
             questions: int = DEFAULT_QUESTIONS, k: int = 5, pipeline: str | None = None) -> dict:
    """Prints the answers and the figures; returns them (for tests and --json callers)."""
    source = corpus_source(folder) or {}
    root_path = Path(root or source.get("root") or ".")
    dataset = load_beir(folder, corpus={})

    def ranked_pages(text: str) -> list[str]:
        hits = conn.execute("SELECT source FROM rag.search(%s, %s, pipeline => %s)",
                            (text, FIGURE_DEPTH, pipeline)).fetchall()
        return documents_in_order(page_id(h[0], root_path) for h in hits)

    shown = []
    print(f"{questions} questions from {folder}: the first ones in its queries.jsonl, "
          "not chosen because they work\n")
    for qid, text in demo_questions(dataset, questions):
        (result,) = conn.execute("SELECT rag.answer(%s, %s, pipeline => %s)",
                                 (text, k, pipeline)).fetchone()
        gold = dataset.qrels[qid]
        cited = [page_id(c["source"], root_path) for c in result["citations"]]
        hit = any(page in gold for page in cited)
        print(f"Q ({qid}): {text}\n")
        print_answer(result, mark=lambda c, gold=gold: "gold"
                     if page_id(c["source"], root_path) in gold else "not a gold page")
        verdict = ("a gold page is cited" if hit else
                   "no cited page is a gold page" if cited else "nothing cited")
        ranked = ranked_pages(text)
        first = next((n for n, page in enumerate(ranked, 1) if page in gold), None)
        found = (f"the first gold page is document {first} of {len(ranked)} that rag.search "
                 "ranks" if first else f"no gold page among the {len(ranked)} documents "
                 "rag.search ranks")
        print(f"\n  -> {verdict} (gold: {', '.join(sorted(gold))}); {found}\n")
        shown.append({"id": qid, "question": text, "mode": result["mode"], "cited": cited,
                      "gold_cited": hit, "first_gold_rank": first})

    run = {qid: ranked_pages(text) for qid, text in dataset.queries.items()
           if dataset.qrels.get(qid)}
    figures = evaluate_run(run, dataset.qrels)
    top5 = sum(1 for qid, ranked in run.items() if set(ranked[:5]) & set(dataset.qrels[qid]))
    print(f"All {len(run)} questions of {folder} through rag.search with its defaults on this "
          f"database: a gold page among the first 5 documents for {top5} "
          f"({100 * top5 / len(run):.0f}%); nDCG@10 {figures['ndcg@10']:.3f}, "
          f"MRR@10 {figures['mrr@10']:.3f}. The full table, all modes: make eval "
          "(docs/quality.md).")
    return {"questions": shown, "judged": len(run), "gold_in_top5": top5,
            "ndcg@10": figures["ndcg@10"], "mrr@10": figures["mrr@10"]}


def add_demo_parser(sub, connect) -> None:
    demo = sub.add_parser(
        "demo", help="answer a judged set's first questions and print the set's figures",
        description="Asks the first N judged questions of a BEIR-format question set (in file "
        "order: a rule, not a choice) through rag.answer, marks each cited page gold or not, "
        "then runs every judged question through rag.search with its defaults and prints how "
        "often a gold page is among the first 5 documents, nDCG@10 and MRR@10. The documents "
        "must already be ingested (make demo ingests the manual pages of tests/data/pgdocs).")
    demo.add_argument("--set", dest="folder", default="tests/data/pgdocs", metavar="DIR",
                      help="the question set (queries.jsonl, qrels/; default tests/data/pgdocs)")
    demo.add_argument("--corpus-root", metavar="DIR", help="the folder the ingested pages came "
                      "from, to turn sources into the set's ids (default: the root named in "
                      "the set's corpus-source.json)")
    demo.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS,
                      help=f"how many questions to answer (default {DEFAULT_QUESTIONS})")
    demo.add_argument("--pipeline", help="the pipeline to ask (default: documents)")

    def demo_command(args) -> int:
        if not 1 <= args.questions <= 20:
            raise ValueError(f"--questions must be between 1 and 20, got {args.questions}")
        with connect(args) as conn:
            run_demo(conn, args.folder, root=args.corpus_root, questions=args.questions,
                     pipeline=args.pipeline)
        return 0

    demo.set_defaults(func=demo_command)
