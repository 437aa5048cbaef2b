"""The memory of one backend across a 10,000-chunk backfill (docs/reliability.md).

Creates a table `notes` of 10,100 rows holding the same sentence and a pipeline over it with
the local embedder, processes the first 100 rows (the model loads), reads the backend's VmRSS
from /proc, processes the rest in the same backend, and reads it again. The texts are equal,
so after the first the vectors are reused: the figure is pgask's own bookkeeping per row
(claims, chunking, plans, writes), not the model's. Run it on the database server's host:

    DATABASE_URL=... .venv/bin/python scripts/backfill_memory.py
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from pgask.localdb import database_url


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for backend {pid}")


def main() -> None:
    with psycopg.connect(database_url(), autocommit=True) as db:
        db.execute("SELECT rag.drop_pipeline('notes') FROM rag.pipelines WHERE name = 'notes'")
        db.execute("DROP TABLE IF EXISTS notes")
        db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
        db.execute("INSERT INTO notes SELECT g, 'A note about checkpoints, vacuum and WAL"
                   " archiving on the primary.' FROM generate_series(1, 10100) AS g")
        db.execute("SELECT rag.create_pipeline('notes', 'notes', 'body')")
        pid = db.info.backend_pid
        db.execute("CALL rag.process_queue('notes', batch_size => 100, max_seconds => 0)")
        before = rss_kb(pid)
        started = time.time()
        while db.execute("CALL rag.process_queue('notes', batch_size => 200)").fetchone()[0]:
            pass
        after = rss_kb(pid)
        (chunks,) = db.execute("SELECT count(*) FROM rag.notes_chunks").fetchone()
        print(f"{chunks} chunks; backend VmRSS {before / 1024:.1f} MB after the first 100 "
              f"rows, {after / 1024:.1f} MB after the rest ({(after - before) / 1024:+.1f} "
              f"MB), {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
