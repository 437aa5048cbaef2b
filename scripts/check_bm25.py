"""Compares rag.search's keyword mode with the rank-bm25 package on a pipeline's own chunks.

Both sides get the same tokens (each chunk's lexemes from its tsvector, repeated as often as
they occur) and the same idf (Lucene's ln(1 + (N - df + 0.5) / (df + 0.5)); rank_bm25's
BM25Okapi uses another variant, swapped here), so any difference is in pgask's SQL.

    .venv/bin/python scripts/check_bm25.py --pipeline eval_xxx --queries queries.jsonl

Prints how many top-10 lists are identical, and the largest relative score difference.
"""

from __future__ import annotations

import argparse
import json
import math

import psycopg
from rank_bm25 import BM25Okapi

from pgask.localdb import database_url


class LuceneIdfBM25(BM25Okapi):
    def _calc_idf(self, nd):
        self.idf = {w: math.log(1 + (self.corpus_size - n + 0.5) / (n + 0.5))
                    for w, n in nd.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--queries", required=True, help="BEIR queries.jsonl")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--k1", type=float, default=1.2)
    parser.add_argument("--b", type=float, default=0.75)
    args = parser.parse_args()

    with psycopg.connect(database_url(), autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT c.id, array_agg(u.lexeme) FROM rag."{args.pipeline}_chunks" AS c,'
            " unnest(c.tsv) AS u, unnest(u.positions) GROUP BY c.id ORDER BY c.id").fetchall()
        (language,) = conn.execute("SELECT language::text FROM rag.pipelines WHERE name = %s",
                                   (args.pipeline,)).fetchone()
        (total,) = conn.execute(f'SELECT count(*) FROM rag."{args.pipeline}_chunks"').fetchone()
        # Chunks with no lexeme at all still count in N and in the average length.
        ids = [r[0] for r in rows] + [None] * (total - len(rows))
        reference = LuceneIdfBM25([r[1] for r in rows] + [[]] * (total - len(rows)),
                                  k1=args.k1, b=args.b)
        with open(args.queries, encoding="utf-8") as handle:
            queries = [json.loads(line)["text"] for line in handle][: args.limit]
        identical = 0
        worst = 0.0
        options = json.dumps({"bm25_k1": args.k1, "bm25_b": args.b})
        for text in queries:
            (lexemes,) = conn.execute("SELECT tsvector_to_array(to_tsvector(%s::regconfig, %s))",
                                      (language, text)).fetchone()
            scores = reference.get_scores(lexemes)
            best = sorted(range(len(ids)), key=lambda i: -scores[i])[:10]
            expected = [(ids[i], scores[i]) for i in best if scores[i] > 0]
            got = conn.execute(
                "SELECT chunk_id, score FROM rag.search(%s, 10, NULL, 'keyword', %s, %s)",
                (text, args.pipeline, options)).fetchall()
            if [g[0] for g in got] == [e[0] for e in expected]:
                identical += 1
            for (_, g), (_, e) in zip(got, expected, strict=False):
                worst = max(worst, abs(g - e) / max(abs(e), 1e-12))
    print(f"{len(queries)} queries over {total} chunks (k1={args.k1}, b={args.b}): top-10 "
          f"identical for {identical} ({identical / len(queries):.1%}); largest relative "
          f"score difference at equal rank {worst:.2e}")


if __name__ == "__main__":
    main()
