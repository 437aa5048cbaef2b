"""`pgask ingest`: files on disk become rows of rag.documents, upserted by source path.

The database does the chunking and embedding (the documents trigger), so what is searched is
exactly what any SQL client inserting documents would get. Each file is its own transaction:
one bad file is reported and skipped, the rest still land.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import psycopg

from pgask.loaders import LoaderError, iter_files, load_file


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        return (f"ingested: {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {len(self.failed)} skipped; "
                f"{self.chunks} chunks written")


_EXISTING = "SELECT id, title, content FROM rag.documents WHERE source = %s"
_UPSERT = """
INSERT INTO rag.documents (source, title, content, metadata)
VALUES (%(source)s, %(title)s, %(content)s, %(metadata)s)
ON CONFLICT (source) DO UPDATE
SET title = excluded.title, content = excluded.content, metadata = excluded.metadata
RETURNING id
"""
_CHUNK_COUNT = "SELECT count(*) FROM rag.chunks WHERE document_id = %s"


def ingest_paths(conn: psycopg.Connection, paths: list[str], progress: bool = True
                 ) -> IngestSummary:
    files = list(iter_files(paths))
    summary = IngestSummary()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="ingest", dynamic_ncols=True,
                   mininterval=0.5)
    for path in files:
        try:
            _ingest_one(conn, path, summary)
        except LoaderError as exc:
            summary.failed.append((str(path), str(exc)))
        except psycopg.DataError as exc:
            summary.failed.append((str(path), str(exc).strip()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(chunks=summary.chunks, skipped=len(summary.failed))
    if bar is not None:
        bar.close()
    return summary


def _ingest_one(conn: psycopg.Connection, path, summary: IngestSummary) -> None:
    document = load_file(path)
    with conn.transaction():
        existing = conn.execute(_EXISTING, (document.source,)).fetchone()
        if existing and (existing[1], existing[2]) == (document.title, document.content):
            summary.unchanged += 1
            return
        (document_id,) = conn.execute(_UPSERT, {
            "source": document.source, "title": document.title, "content": document.content,
            "metadata": json.dumps(document.metadata),
        }).fetchone()
        (chunks,) = conn.execute(_CHUNK_COUNT, (document_id,)).fetchone()
    summary.chunks += chunks
    if existing:
        summary.updated += 1
    else:
        summary.added += 1


def cmd_ingest(args, connect) -> int:
    with connect(args) as conn:
        summary = ingest_paths(conn, args.paths, progress=not args.quiet)
    print(summary.describe())
    for path, reason in summary.failed:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def add_ingest_parser(sub, connect) -> None:
    """Registers `pgask ingest`; `connect(args)` opens the database connection."""
    ing = sub.add_parser("ingest", help="load Markdown, text and HTML files as documents",
                         description="Each file becomes one row of rag.documents keyed by its "
                         "path; its chunks are embedded by the database. Unchanged files are "
                         "skipped; files that cannot be read are reported and skipped.")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ing.set_defaults(func=lambda args: cmd_ingest(args, connect))
