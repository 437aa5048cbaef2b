"""What an async pipeline adds to a write, part by part (BENCHMARKS.md, INSERT row).

`make bench` times a single-row autocommit INSERT into a table with an async pipeline against
the same INSERT into a table without one. This takes the capture trigger apart to show where
the difference goes: each variant below changes the previous one in a scratch database
(pgask_bench, recreated), and is timed INSERT by INSERT alternately with the plain table, as
`make bench` does:

- as installed: the statement trigger appends one row (the statement's keys) to rag.inbox;
- trigger, no inbox: the trigger only collects the written keys, as the real one does first;
- empty trigger: a trigger that does nothing (what any statement trigger with a transition
  table costs).

Before the inbox (migration 0009) the trigger upserted into rag.queue; this script then
showed that ON CONFLICT's speculative insertion was most of the gap (docs/measured.md). The
variants after the first are not something pgask could ship; they show what is left.

    python scripts/measure_insert_floor.py postgresql://postgres@127.0.0.1:54329/pgask \
        --rounds 3000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

from pgask_measure.bench.common import scratch_database  # noqa: E402

FUNCTION = "rag.pgask_piped_capture"


def _insert_ms(conn: psycopg.Connection, table: str, i: int) -> float:
    began = time.perf_counter()
    conn.execute(f"INSERT INTO {table} (id, body) VALUES (%s, %s)",
                 (i, f"Ticket {i}: the disk on host {i} is full"))
    return (time.perf_counter() - began) * 1000


def _replace_trigger(body: str):
    return lambda conn: conn.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql"
        f" AS $f$ DECLARE changed text[]; BEGIN {body} RETURN NULL; END $f$")


VARIANTS = (
    ("as installed", lambda conn: None),
    ("trigger, no inbox", _replace_trigger(
        "changed := ARRAY(SELECT s.id::text FROM new_rows AS s);")),
    ("empty trigger", _replace_trigger("")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="a server where pgask can be installed (make db's)")
    parser.add_argument("--rounds", type=int, default=3000, help="INSERTs per table and variant")
    args = parser.parse_args()
    with psycopg.connect(scratch_database(args.url), autocommit=True) as conn:
        for table in ("plain", "piped"):
            conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text NOT NULL)")
        conn.execute("SELECT rag.create_pipeline('piped', 'piped', 'body')")
        print(f"{'':20}{'plain p50':>11}{'piped p50':>11}{'ratio':>7}   ({args.rounds} each)")
        for n, (label, change) in enumerate(VARIANTS):
            change(conn)
            plain, piped = [], []
            for i in range(n * args.rounds, (n + 1) * args.rounds):
                plain.append(_insert_ms(conn, "plain", i))
                piped.append(_insert_ms(conn, "piped", i))
            a, b = statistics.median(plain), statistics.median(piped)
            print(f"{label:20}{a:9.3f}ms{b:9.3f}ms{b / a:7.2f}", flush=True)


if __name__ == "__main__":
    main()
