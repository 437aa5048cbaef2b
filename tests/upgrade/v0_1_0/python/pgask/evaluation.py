"""Retrieval and answer quality metrics, and readers for the data sets they are computed on.

Pure: no database. BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) for retrieval;
SQuAD 2.0 JSON for answers. Metrics follow trec_eval (as pytrec_eval, which BEIR uses): nDCG
with linear gains and log2 discounts, the ideal ranking built from the judged documents; recall
over documents judged relevant (score > 0); reciprocal rank of the first relevant document.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RETRIEVAL_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@dataclass(frozen=True)
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def _jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None


def default_split(folder: Path) -> str:
    """'test' when there is one, else the only split the folder has."""
    splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    if "test" in splits or len(splits) != 1:
        return "test"
    return splits[0]


def load_beir(folder: str | Path, split: str | None = None) -> BeirDataset:
    """Reads a BEIR-format folder; raises ValueError naming what is missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"dataset folder {folder} does not exist")
    split = split or default_split(folder)
    paths = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
             "qrels": folder / "qrels" / f"{split}.tsv"}
    for what, path in paths.items():
        if not path.is_file():
            raise ValueError(f"dataset {folder} has no {path.relative_to(folder)} ({what}); "
                             "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv")
    corpus = {str(d["_id"]): (d.get("title") or "", d.get("text") or "")
              for d in _jsonl(paths["corpus"])}
    queries = {str(q["_id"]): q["text"] for q in _jsonl(paths["queries"])}
    qrels: dict[str, dict[str, int]] = {}
    with paths["qrels"].open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if number == 1 and not fields[-1].lstrip("-").isdigit():
                continue  # the header: query-id corpus-id score
            if len(fields) != 3:
                raise ValueError(f"{paths['qrels']}:{number}: expected query-id, corpus-id, "
                                 f"score separated by tabs, got {line.strip()!r}")
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return BeirDataset(folder.name, corpus, queries, qrels)


def ndcg_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:k]
    idcg = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    relevant = {doc for doc, rel in judged.items() if rel > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], judged: dict[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


def documents_in_order(chunk_documents: Iterable[str]) -> list[str]:
    """Chunk hits best first -> documents best first, each at its best chunk's rank
    (max pooling of chunk scores)."""
    return list(dict.fromkeys(chunk_documents))


def evaluate_run(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean of each metric over the judged queries in `run` (query id -> ranked doc ids)."""
    judged = [q for q in run if qrels.get(q)]
    if not judged:
        raise ValueError("no query in the run has relevance judgements")
    per_metric = {
        "ndcg@10": lambda r, j: ndcg_at_k(r, j, 10),
        "recall@10": lambda r, j: recall_at_k(r, j, 10),
        "recall@100": lambda r, j: recall_at_k(r, j, 100),
        "mrr@10": lambda r, j: mrr_at_k(r, j, 10),
    }
    return {name: sum(metric(run[q], qrels[q]) for q in judged) / len(judged)
            for name, metric in per_metric.items()}


# --- SQuAD 2.0 ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # empty for unanswerable questions
    context_id: str


@dataclass(frozen=True)
class SquadSet:
    contexts: dict[str, tuple[str, str]]  # context id -> (article title, paragraph)
    questions: list[SquadQuestion]


def load_squad(path: str | Path) -> SquadSet:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"SQuAD file {path} does not exist")
    data = json.loads(path.read_text(encoding="utf-8"))
    contexts: dict[str, tuple[str, str]] = {}
    questions = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article["paragraphs"]):
            context_id = f"{a}-{p}"
            contexts[context_id] = (article.get("title", ""), paragraph["context"])
            for qa in paragraph["qas"]:
                answers = () if qa.get("is_impossible") else tuple(
                    dict.fromkeys(x["text"] for x in qa["answers"]))
                questions.append(SquadQuestion(qa["id"], qa["question"], answers, context_id))
    return SquadSet(contexts, questions)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: Iterable[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in gold))


def f1_score(prediction: str, gold: Iterable[str]) -> float:
    best = 0.0
    predicted = normalize_answer(prediction).split()
    for answer in gold:
        expected = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
