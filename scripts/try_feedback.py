"""Pseudo-relevance feedback (RM3-style) for hybrid search's keyword list, measured on the
pipelines `pgask eval` built (docs/quality.md; tried and not kept).

For each judged query: the vector list and the keyword list as the defaults make them (depth
200, BM25 k1 0.9 / b 0.4, z-score fusion), then for each setting (m, n, beta): the terms of
the first ranking's top m chunks, each scored by its share of the chunk's terms (chunks
weighted by a softmax of their fused scores) times its idf; the best n terms not in the
query join it with BM25 weight idf * beta * (score / best score); the keyword list is run
again and fused as before. Keyword lists are scored exhaustively here (no pruning), with
rag.search's formula and the store's statistics, so the "none" row must equal `pgask eval`'s
hybrid nDCG@10 for the set. Run `make eval` (or `pgask eval` per set) first.

    python scripts/try_feedback.py --dataset tests/data/pgdocs --dataset tests/data/runbooks \
        --dataset ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

from pgask.localdb import database_url  # noqa: E402
from pgask.retrieval.fusion import zscore_fusion  # noqa: E402
from pgask.retrieval.search import tsquery_all  # noqa: E402
from pgask_measure.eval_corpus import corpus_source  # noqa: E402
from pgask_measure.evaluation import documents_in_order, load_beir, ndcg_at_k  # noqa: E402

DEPTH = 200
K1, B = 0.9, 0.4
SETTINGS = ((3, 5, 0.3), (3, 5, 0.6), (10, 5, 0.6), (3, 10, 0.6))
KEYWORD = (
    "SELECT c.id, m.score FROM {table} AS c CROSS JOIN LATERAL (SELECT sum("
    "(%(weights)s::float8[])[array_position(%(terms)s::text[], u.lexeme)]"
    " * cardinality(u.positions) * (%(k1)s + 1) / (cardinality(u.positions)"
    " + %(k1)s * (1 - %(b)s + %(b)s * c.doc_length / %(avgdl)s))) AS score"
    " FROM unnest(ts_filter(setweight(c.tsv, 'A', %(terms)s::text[]), '{{a}}')) AS u) AS m"
    " WHERE c.tsv @@ ANY(%(queries)s::tsquery[]) ORDER BY m.score DESC, c.id LIMIT %(depth)s")


class Store:
    """One eval pipeline's chunk table, with the statements the measurement needs."""

    def __init__(self, conn: psycopg.Connection, pipeline: str) -> None:
        self.conn, self.pipeline = conn, pipeline
        self.name, self.language = conn.execute(
            "SELECT rag._store(name, active_set), language::text FROM rag.pipelines"
            " WHERE name = %s", (pipeline,)).fetchone()
        self.table = f'rag."{self.name}"'
        self.document = dict(conn.execute(f"SELECT id, document_id FROM {self.table}"))
        self._terms: dict[int, dict[str, int]] = {}

    def idfs(self, lexemes: list[str]) -> tuple[dict[str, float], float]:
        rows = self.conn.execute("SELECT lexeme, idf, avgdl FROM rag._bm25_idf(%s, %s)",
                                 (self.name, lexemes)).fetchall()
        return {r[0]: r[1] for r in rows}, (rows[0][2] if rows else 1.0)

    def keyword(self, terms: list[str], weights: list[float], avgdl: float):
        if not terms:
            return []
        return [tuple(r) for r in self.conn.execute(KEYWORD.format(table=self.table), {
            "weights": weights, "terms": terms, "k1": K1, "b": B, "avgdl": avgdl,
            "queries": [tsquery_all([t]) for t in terms], "depth": DEPTH})]

    def vector(self, text: str):
        options = json.dumps({"ef_search": DEPTH, "candidates_factor": 1})
        return [tuple(r) for r in self.conn.execute(
            "SELECT chunk_id, vector_score FROM rag.search(%s, %s, NULL, 'vector', %s, %s)",
            (text, DEPTH, self.pipeline, options))]

    def terms(self, ids: list[int]) -> list[dict[str, int]]:
        missing = [i for i in ids if i not in self._terms]
        for chunk_id in missing:
            self._terms[chunk_id] = {}
        for chunk_id, lexeme, tf in self.conn.execute(
                f"SELECT c.id, u.lexeme, cardinality(u.positions) FROM {self.table} AS c,"
                " unnest(c.tsv) AS u WHERE c.id = ANY(%s)", (missing,)):
            self._terms[chunk_id][lexeme] = tf
        return [self._terms[i] for i in ids]


def expansion(store: Store, first, query_terms: dict, m: int, n: int
              ) -> list[tuple[float, str, float]]:
    """(score, term, idf) of the best n feedback terms, best first."""
    top = first[:m]
    scores = np.array([s for _, s in top])
    shares = np.exp(scores - scores.max())
    shares /= shares.sum()
    weight: collections.Counter = collections.Counter()
    for counts, share in zip(store.terms([c for c, _ in top]), shares, strict=True):
        total = sum(counts.values()) or 1
        for term, tf in counts.items():
            weight[term] += share * tf / total
    candidates = [t for t, _ in weight.most_common(4 * n + len(query_terms))
                  if t not in query_terms]
    idf, _ = store.idfs(candidates)
    return sorted(((weight[t] * idf[t], t, idf[t]) for t in candidates if t in idf),
                  reverse=True)[:n]


def measure(conn: psycopg.Connection, folder: str) -> dict:
    # Only queries and judgements are read: the corpus is the pipeline's.
    dataset = load_beir(folder, corpus={} if corpus_source(folder) else None)
    row = conn.execute(
        "SELECT pipeline FROM rag.eval_runs WHERE kind = 'retrieval' AND dataset = %s"
        " AND chunker = '{}' AND coalesce(settings ->> 'titles', 'column') = 'column'"
        " AND pipeline IN (SELECT name FROM rag.pipelines) ORDER BY id DESC LIMIT 1",
        (dataset.name,)).fetchone()
    if row is None:
        raise SystemExit(f"no eval pipeline for {dataset.name}: run pgask eval --dataset {folder}")
    store = Store(conn, row[0])
    ndcg: dict = collections.defaultdict(list)
    for query_id, judged in dataset.qrels.items():
        text = dataset.queries.get(query_id)
        if text is None:
            continue
        (lexemes,) = conn.execute("SELECT tsvector_to_array(to_tsvector(%s::regconfig, %s))",
                                  (store.language, text)).fetchone()
        idf, avgdl = store.idfs(list(lexemes or []))
        terms = list(idf)
        vector = store.vector(text)
        first = zscore_fusion([vector, store.keyword(terms, [idf[t] for t in terms], avgdl)],
                              [1, 1])

        def score(fused, judged=judged) -> float:
            return ndcg_at_k(documents_in_order(store.document[c] for c, _ in fused), judged, 10)

        ndcg["none"].append(score(first))
        for m, n, beta in SETTINGS:
            added = expansion(store, first, idf, m, n) if first else []
            fused = first
            if added:
                best = added[0][0]
                keyword = store.keyword(
                    terms + [t for _, t, _ in added],
                    [idf[t] for t in terms] + [beta * i * s / best for s, _, i in added], avgdl)
                fused = zscore_fusion([vector, keyword], [1, 1])
            ndcg[(m, n, beta)].append(score(fused))
    return {"name": dataset.name, "pipeline": store.pipeline, "queries": len(ndcg["none"]),
            "ndcg": {key: statistics.mean(v) for key, v in ndcg.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", required=True,
                        help="a BEIR folder already measured with pgask eval (repeatable)")
    parser.add_argument("--database-url", default=None, help="default: the local cluster's")
    args = parser.parse_args()
    with psycopg.connect(args.database_url or database_url(), autocommit=True) as conn:
        results = [measure(conn, folder) for folder in args.dataset]
    print("m, n, beta      " + "".join(f"{r['name']:>12}" for r in results))
    for key in results[0]["ndcg"]:
        label = key if key == "none" else ", ".join(map(str, key))
        print(f"{label:15}" + "".join(f"{r['ndcg'][key]:12.4f}" for r in results))


if __name__ == "__main__":
    main()
