"""`pgask eval` and `pgask eval-answers`: run a data set through the real pipeline and search.

The corpus is loaded into a table of schema rag_eval and embedded by a pipeline named after a
hash of the corpus, the chunker settings and the embedder, so a second run with the same three
re-uses it without embedding anything. Every query goes through rag.search (rag.answer for
answers), exactly as a user's would. Results are printed and kept in rag.eval_runs and
rag.eval_results.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pgask.llm.prompt import Passage as PromptPassage
from pgask.llm.prompt import build_prompt
from pgask.progress import progress_bar
from pgask.worker import backfill
from pgask_measure.eval_corpus import build_corpus, corpus_digest, corpus_source
from pgask_measure.evaluation import (
    RETRIEVAL_METRICS,
    default_split,
    documents_in_order,
    evaluate_run,
    exact_match,
    f1_score,
    load_beir,
    load_squad,
    normalize_answer,
)

SCHEMA = "rag_eval"
# "hybrid+rerank": hybrid, then the reranker named by --reranker over the best candidates.
MODES = ("vector", "keyword", "hybrid", "hybrid+rerank")
# How deep `pgask eval` searches. "production" (the default): rag.search(question, --k) with
# rag.search's own defaults (ef_search 100, candidates_factor 4: 40 candidates per list for
# k 10), what an application that asks for --k chunks gets. "deep": DEEP_K chunks with
# ef_search DEEP_K and one candidate per result, enough distinct documents for recall@100,
# to compare rankings far past what anyone reads.
DEPTHS = ("production", "deep")
PRODUCTION_K = 10
DEEP_K = 200
# What the eval pipeline gets of a document's title: "column", its title column (embedded in
# front of every chunk and indexed with every chunk's words, as for rag.documents); "body",
# the title as the first line of the text (so only the first chunk carries it); "none".
TITLES = ("column", "body", "none")


def corpus_pipeline(conn: psycopg.Connection, label: str, digest: str,
                    rows: list[tuple[str, str, str]], chunker: dict, embedder: str,
                    progress: bool) -> str:
    """The pipeline holding `rows` (id, title, text) embedded with these settings; created and
    embedded on first use, resumed if a previous run was interrupted."""
    key = hashlib.sha256(json.dumps([digest, chunker, embedder], sort_keys=True).encode()
                         ).hexdigest()[:10]
    name = f"eval_{key}"
    table = sql.Identifier(SCHEMA, f"corpus_{key}")
    exists = conn.execute("SELECT 1 FROM rag.pipelines WHERE name = %s", (name,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        with conn.transaction():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, title text NOT NULL,"
                                 " body text NOT NULL)").format(table))
            with conn.cursor().copy(sql.SQL("COPY {} (id, title, body) FROM STDIN").format(
                    table)) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("SELECT rag.create_pipeline(%s, %s, 'body', title => 'title',"
                         " chunker => %s, embedder => %s)",
                         (name, f"{SCHEMA}.corpus_{key}", json.dumps(chunker), embedder))
        print(f"{label}: {len(rows)} documents loaded into {SCHEMA}.corpus_{key} "
              f"(pipeline {name})", file=sys.stderr)
    _, failed = backfill(conn, name, batch_size=32, lease_seconds=600, progress=progress)
    if failed:
        raise RuntimeError(f"{failed} documents of {label} could not be embedded: see "
                           f"SELECT * FROM rag.dead_letters WHERE pipeline = '{name}'")
    return name


def _titled(title: str, text: str, titles: str) -> tuple[str, str]:
    """(title, body) for the eval table under the ``titles`` handling."""
    if titles == "column" or not title:
        return title, text
    return ("", f"{title}\n\n{text}") if titles == "body" else ("", text)


def _record(conn: psycopg.Connection, kind: str, dataset: str, split: str | None,
            pipeline: str, chunker: dict, settings: dict, queries: int, seconds: float,
            results: dict[str, dict[str, float]]) -> int:
    (embedder,) = conn.execute("SELECT embedder FROM rag.pipelines WHERE name = %s",
                               (pipeline,)).fetchone()
    with conn.transaction():
        (run_id,) = conn.execute(
            "INSERT INTO rag.eval_runs (kind, dataset, split, pipeline, embedder, chunker,"
            " settings, queries, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (kind, dataset, split, pipeline, embedder, json.dumps(chunker),
             json.dumps(settings), queries, seconds)).fetchone()
        for mode, metrics in results.items():
            for metric, value in metrics.items():
                conn.execute("INSERT INTO rag.eval_results VALUES (%s, %s, %s, %s)",
                             (run_id, mode, metric, value))
    return run_id


def run_retrieval_eval(conn: psycopg.Connection, folder: str, *, modes=MODES, chunker=None,
                       embedder: str = "local", depth: int | None = None,
                       search_depth: str = "production",
                       split: str | None = None, limit: int | None = None,
                       options: dict | None = None, reranker: str = "local",
                       corpus_root: str | None = None, titles: str = "column",
                       progress: bool = True) -> dict:
    """Every judged query of the BEIR folder through rag.search in each mode. A folder with a
    corpus-source.json builds its corpus from files (pgask.eval_corpus) under its root, or
    under ``corpus_root`` when given. ``titles`` says what the pipeline gets of each title
    (TITLES), to measure how titles should be handled."""
    if search_depth not in DEPTHS:
        raise ValueError(f"--depth must be one of {', '.join(DEPTHS)}, got {search_depth!r}")
    depth = depth or (DEEP_K if search_depth == "deep" else PRODUCTION_K)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"--modes: {', '.join(unknown)} not available; choose from "
                         f"{', '.join(MODES)}")
    split = split or default_split(Path(folder))
    source = corpus_source(folder)
    if source is not None:
        corpus = build_corpus(corpus_root or source["root"], source.get("include", ()),
                              source.get("exclude", ()))
        dataset = load_beir(folder, split, corpus=corpus)
        digest = corpus_digest(corpus)
    else:
        dataset = load_beir(folder, split)
        digest = hashlib.sha256((Path(folder) / "corpus.jsonl").read_bytes()).hexdigest()
    if titles not in TITLES:
        raise ValueError(f"--titles must be one of {', '.join(TITLES)}, got {titles!r}")
    chunker = chunker or {}
    rows = [(doc_id, *_titled(title, text, titles))
            for doc_id, (title, text) in dataset.corpus.items()]
    if titles != "column":  # another corpus for the pipeline; the default keeps its old key
        digest = f"{digest}:titles={titles}"
    pipeline = corpus_pipeline(conn, dataset.name, digest, rows, chunker, embedder, progress)

    queries = [(q, dataset.queries[q]) for q in dataset.qrels if q in dataset.queries]
    queries = queries[:limit] if limit else queries
    if search_depth == "deep":
        # The HNSW candidate list must cover the depth asked for; each list of a hybrid
        # search is as deep as the result (200 already reaches far past recall@100's
        # documents).
        options = {"ef_search": max(40, min(depth, 1000)), "candidates_factor": 1,
                   **(options or {})}
    else:  # what rag.search gives an application: its own defaults, or the options given
        options = dict(options or {})
    started = time.monotonic()
    results = {}
    for mode in modes:
        run = {}
        search_mode, call_options = mode, dict(options)
        if mode == "hybrid+rerank":
            search_mode, call_options["rerank"] = "hybrid", reranker
        bar = progress_bar(len(queries), f"{mode} search", "query", progress)
        for query_id, text in queries:
            hits = conn.execute("SELECT document_id FROM rag.search(%s, %s, NULL, %s, %s, %s)",
                                (text, depth, search_mode, pipeline,
                                 json.dumps(call_options))).fetchall()
            run[query_id] = documents_in_order(h[0] for h in hits)
            bar.update(1)
        bar.close()
        results[mode] = evaluate_run(run, dataset.qrels)
        if depth < 100:  # fewer chunks than recall@100 counts documents: not measured
            del results[mode]["recall@100"]
    seconds = time.monotonic() - started
    settings = {"pipeline": pipeline, "chunker": chunker, "embedder": embedder,
                "titles": titles, "search_depth": search_depth, "depth": depth, "split": split,
                "queries": len(queries),
                "options": options}
    if "hybrid+rerank" in modes:
        settings["reranker"] = reranker
    _record(conn, "retrieval", dataset.name, split, pipeline, chunker, settings, len(queries),
            seconds, results)
    return {"dataset": dataset.name, "results": results, "settings": settings}


_MARKER = re.compile(r"\s*\[\d+\]")


def contains_answer(prediction: str, gold) -> bool:
    """Whether any gold answer appears in the prediction (both normalised): the fair measure
    for sentence extraction, where exact match is meaningless."""
    text = normalize_answer(prediction)
    return any(normalize_answer(g) and normalize_answer(g) in text for g in gold)


def reply_kind(reply: str, gold: list[str] | None) -> str:
    """What a generated reply is, by its question's gold answers (a --details line's `gold`):
    "manual" (no gold: judged by reading), "invented" (SQuAD marks the question unanswerable),
    "correct" (it contains a gold answer) or "wrong"."""
    if gold is None:
        return "manual"
    if not gold:
        return "invented"
    return "correct" if contains_answer(reply, gold) else "wrong"


def _shown_passages(conn: psycopg.Connection, question: str, k: int,
                    pipeline: str) -> list[str]:
    """The passages rag.answer showed the LLM for `question`: the same search, cut by the
    same prompt budget (eval-answers passes no search or prompt options)."""
    rows = conn.execute("SELECT content, title FROM rag.search(%s, %s, NULL::jsonb, 'hybrid',"
                        " %s) ORDER BY rank", (question, k, pipeline)).fetchall()
    prompt = build_prompt(question, [PromptPassage(content, title) for content, title in rows])
    return [rows[i][0] for i in prompt.included]


def _detail(q, result: dict, passages: list[str] | None) -> dict:
    """One line of --details: enough to re-judge the reply offline without the model."""
    generated = result["mode"] == "generated" or "generated_answer" in result
    return {"id": q.id, "question": q.question, "gold": list(q.answers),
            "mode": result["mode"], "answer": result["answer"],
            # The LLM's reply as it came, before the guard corrected or withheld it.
            "reply": result.get("generated_answer", result["answer"]) if generated else None,
            "grounded": result["grounded"], "problems": result["problems"],
            "claims": result.get("claims", []), "passages": passages}


def run_answer_eval(conn: psycopg.Connection, squad_file: str, *, k: int = 5,
                    limit: int | None = None, model: str | None = None,
                    progress: bool = True, details: str | None = None) -> dict:
    """Answer quality on SQuAD 2.0: exact match, F1 and gold-answer containment on answerable
    questions, the share answered, and how often unanswerable ones get "I don't know".
    With `model` (a rag.llms name) the guard runs in flag mode, so each generated answer is
    seen with its verdict: guard_keeps_correct is the share of correct generated answers
    (gold contained) it lets through; guard_stops_invented the share of generated answers to
    unanswerable questions (inventions) it flags; guard_stops_wrong the same for answerable
    questions answered without the gold answer. The *_facts variants count only the guard's
    fact checks (numbers, dates, quotes, names), leaving out its citation rules, which small
    models fail by not citing at all. citation_rate is the share of generated replies that
    carry an [n] of their own; claims_supported / claims_unsupported count the guard's claims.
    `details` names a JSON-lines file that gets every question, reply, answer, verdict and
    problem (and the passages shown, to re-judge replies offline)."""
    squad = load_squad(squad_file)
    digest = hashlib.sha256(Path(squad_file).read_bytes()).hexdigest()
    rows = [(cid, title, text) for cid, (title, text) in squad.contexts.items()]
    pipeline = corpus_pipeline(conn, Path(squad_file).name, digest, rows, {}, "local", progress)
    questions = squad.questions[:limit] if limit else squad.questions
    options = {"log": False, "guard": "flag", "on_llm_error": "error"}
    counts = dict.fromkeys(("em", "f1", "contains", "refused_answerable", "correct_refusals",
                            "answerable", "correct", "correct_kept", "correct_kept_facts",
                            "invented", "invented_stopped", "invented_stopped_facts",
                            "wrong", "wrong_stopped", "wrong_stopped_facts", "generated",
                            "cited", "claims_supported", "claims_unsupported"), 0)
    detail_file = open(details, "w", encoding="utf-8") if details else None  # noqa: SIM115
    bar = progress_bar(len(questions), "answers", "query", progress)
    started = time.monotonic()
    for q in questions:
        (result,) = conn.execute(
            "SELECT rag.answer(%s, %s, pipeline => %s, model => %s, options => %s)",
            (q.question, k, pipeline, model or "extractive", json.dumps(options))).fetchone()
        refused = result["mode"] == "no_answer"
        text = _MARKER.sub("", result["answer"])
        generated = result["mode"] == "generated"
        reply = result.get("generated_answer", result["answer"])
        if generated or "generated_answer" in result:  # withheld replies count too
            counts["generated"] += 1
            counts["cited"] += bool(_MARKER.search(reply))
            for claim in result.get("claims", []):
                counts["claims_supported" if claim["supported"] else "claims_unsupported"] += 1
        if detail_file:
            passages = _shown_passages(conn, q.question, k, pipeline) if model else None
            detail_file.write(json.dumps(_detail(q, result, passages)) + "\n")
            detail_file.flush()  # a long run can be followed, and survives being stopped
        # The guard's fact checks say "... is not in ..."; its citation rules do not.
        facts_flagged = any(" is not in " in problem for problem in result["problems"])
        if q.answers:
            counts["answerable"] += 1
            counts["refused_answerable"] += refused
            if not refused:
                counts["em"] += exact_match(text, q.answers)
                counts["f1"] += f1_score(text, q.answers)
                counts["contains"] += contains_answer(text, q.answers)
            if generated and contains_answer(text, q.answers):
                counts["correct"] += 1
                counts["correct_kept"] += result["grounded"]
                counts["correct_kept_facts"] += not facts_flagged
            elif generated:
                counts["wrong"] += 1
                counts["wrong_stopped"] += not result["grounded"]
                counts["wrong_stopped_facts"] += facts_flagged
        else:
            counts["correct_refusals"] += refused
            if generated:
                counts["invented"] += 1
                counts["invented_stopped"] += not result["grounded"]
                counts["invented_stopped_facts"] += facts_flagged
        bar.update(1)
    bar.close()
    if detail_file:
        detail_file.close()
    answerable = counts["answerable"]
    unanswerable = len(questions) - answerable

    def share(part: str, whole: int) -> float:
        return counts[part] / whole if whole else 0.0

    metrics = {
        "exact_match": share("em", answerable),
        "f1": share("f1", answerable),
        "contains_answer": share("contains", answerable),
        "answered_rate": 1 - share("refused_answerable", answerable),
        "no_answer_accuracy": share("correct_refusals", unanswerable),
    }
    if model:
        metrics.update({
            "guard_keeps_correct": share("correct_kept", counts["correct"]),
            "guard_stops_invented": share("invented_stopped", counts["invented"]),
            "guard_stops_wrong": share("wrong_stopped", counts["wrong"]),
            "guard_keeps_correct_facts": share("correct_kept_facts", counts["correct"]),
            "guard_stops_invented_facts": share("invented_stopped_facts", counts["invented"]),
            "guard_stops_wrong_facts": share("wrong_stopped_facts", counts["wrong"]),
            "citation_rate": share("cited", counts["generated"]),
            "claims_supported": float(counts["claims_supported"]),
            "claims_unsupported": float(counts["claims_unsupported"]),
        })
    settings = {"pipeline": pipeline, "k": k, "answerable": answerable,
                "unanswerable": unanswerable, "model": model or "extractive",
                **({"generated_correct": counts["correct"], "generated_invented":
                    counts["invented"], "generated_wrong": counts["wrong"],
                    "generated": counts["generated"]} if model else {})}
    label = f"llm:{model}" if model else "extractive"
    _record(conn, "answers", Path(squad_file).name, None, pipeline, {}, settings,
            len(questions), time.monotonic() - started, {label: metrics})
    return {"dataset": Path(squad_file).name, "results": {label: metrics},
            "settings": settings}


def format_table(report: dict) -> str:
    results = report["results"]
    metrics = list(next(iter(results.values())))
    lines = [f"{report['dataset']}  " + "  ".join(
        f"{k}={v}" for k, v in report["settings"].items() if k in (
            "split", "queries", "search_depth", "depth", "answerable", "unanswerable", "model",
            "generated_correct", "generated_invented", "generated_wrong", "generated"))]
    lines.append("mode".ljust(16) + "".join(m.rjust(20) for m in metrics))
    for mode, values in results.items():
        lines.append(mode.ljust(16) + "".join(f"{values[m]:20.4f}" for m in metrics))
    return "\n".join(lines)


def add_eval_parsers(sub, connect) -> None:
    ev = sub.add_parser("eval", help="retrieval quality on a BEIR-format data set",
                        description="Loads corpus.jsonl into a pipeline (embedded once, reused "
                        "while corpus, chunker and embedder are unchanged), runs every judged "
                        "query through rag.search as an application asks (--k, rag.search's "
                        "defaults; --depth deep searches 200 deep) and prints nDCG@10, "
                        "recall@10, recall@100 (k >= 100) and MRR@10. Results are also "
                        "kept in rag.eval_runs/rag.eval_results (view rag.eval_summary).")
    ev.add_argument("--dataset", required=True, metavar="DIR",
                    help="folder with corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    ev.add_argument("--modes", default="vector,keyword,hybrid",
                    help=f"comma-separated search modes (available: {', '.join(MODES)}; "
                    "default vector,keyword,hybrid)")
    ev.add_argument("--options", default="{}", metavar="JSON",
                    help='rag.search options, e.g. \'{"bm25_k1": 0.9, "bm25_b": 0.4}\'')
    ev.add_argument("--reranker", default="local",
                    help="reranker for mode hybrid+rerank (a rag.rerankers name; default local)")
    ev.add_argument("--chunker", default="{}", metavar="JSON",
                    help='chunker settings, e.g. \'{"method": "tokens", "max_tokens": 128}\'')
    ev.add_argument("--embedder", default="local", help="registered embedder (default local)")
    ev.add_argument("--k", type=int,
                    help=f"chunks retrieved per query (default {PRODUCTION_K}, or {DEEP_K} "
                    "with --depth deep; documents are ranked by their best chunk; recall@100 "
                    "is measured from 100 up)")
    ev.add_argument("--depth", choices=DEPTHS, default="production",
                    help="production (default): rag.search(question, k) with its own "
                    f"defaults, what applications get; deep: {DEEP_K} chunks with ef_search "
                    f"{DEEP_K} and one candidate per result, for recall@100")
    ev.add_argument("--corpus-root", metavar="DIR",
                    help="for a data set whose corpus is built from files (its "
                    "corpus-source.json): the folder holding them, instead of the root "
                    "named there")
    ev.add_argument("--titles", choices=TITLES, default="column",
                    help="what the pipeline gets of each title: its title column (default; "
                    "embedded and indexed with every chunk), the first line of the body, or "
                    "nothing; to measure title handling")
    ev.add_argument("--split", help="qrels split (default: test, or the only one there is)")
    ev.add_argument("--limit", type=int, help="only the first N judged queries")
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def eval_command(args) -> int:
        try:
            chunker = json.loads(args.chunker)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--chunker must be JSON: {exc.msg}") from None
        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--options must be JSON: {exc.msg}") from None
        if args.k is not None and not 10 <= args.k <= 1000:
            raise ValueError(f"--k must be between 10 and 1000, got {args.k}")
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        with connect(args) as conn:
            report = run_retrieval_eval(conn, args.dataset, modes=modes, chunker=chunker,
                                        embedder=args.embedder, depth=args.k,
                                        search_depth=args.depth, split=args.split,
                                        limit=args.limit, options=options,
                                        reranker=args.reranker, corpus_root=args.corpus_root,
                                        titles=args.titles, progress=not args.quiet)
        print(json.dumps(report, indent=2) if args.json else format_table(report))
        return 0

    ev.set_defaults(func=eval_command)

    ans = sub.add_parser("eval-answers", help="answer quality on a SQuAD 2.0 file",
                         description="Loads the paragraphs into a pipeline, asks every question "
                         "through rag.answer and prints exact match and F1 on answerable "
                         "questions, the share of them answered, and how often unanswerable "
                         "ones get \"I don't know\".")
    ans.add_argument("--squad", required=True, metavar="FILE", help="SQuAD 2.0 JSON file")
    ans.add_argument("--k", type=int, default=5, help="chunks per answer (default 5)")
    ans.add_argument("--model", help="a registered LLM (rag.create_llm): generated answers, "
                     "with the grounding guard measured (default: extractive answers)")
    ans.add_argument("--limit", type=int, help="only the first N questions")
    ans.add_argument("--details", metavar="FILE", help="write one JSON line per question: "
                     "question, gold answers, the LLM's reply, the answer, verdict, problems, "
                     "claims and the passages shown")
    ans.add_argument("--json", action="store_true", help="print the results as JSON")
    ans.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def answers_command(args) -> int:
        with connect(args) as conn:
            report = run_answer_eval(conn, args.squad, k=args.k, limit=args.limit,
                                     model=args.model, progress=not args.quiet,
                                     details=args.details)
        print(json.dumps(report, indent=2) if args.json else format_table(report))
        return 0

    ans.set_defaults(func=answers_command)


__all__ = ["RETRIEVAL_METRICS", "add_eval_parsers", "run_answer_eval", "run_retrieval_eval"]
