"""`pgask ingest`: files on disk become rows of rag.documents, upserted by source path.

The database does the chunking and embedding (the documents pipeline), so what is searched is
exactly what any SQL client inserting documents would get; this module only writes
rag.documents rows. Each file is its own transaction: one bad file is reported and skipped,
the rest still land.

A file whose bytes hash to the sha256 stored in its document's metadata is unchanged and is
not even parsed; one whose text and title are unchanged is not rewritten (at most its metadata
is), so a second run over the same files updates nothing and embeds nothing.

With ``--sync``, documents whose files disappeared from a synced directory are deleted. A
document belongs to a directory when its metadata.path (the absolute path this command
records) lies under it, so documents written any other way are never touched. Files that
still exist are kept even when --include/--exclude leave them out of this run; a file known
under another spelling of its path (docs/a.md, then /abs/docs/a.md) is re-keyed by deleting
the old row, so it is not indexed twice.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import psycopg
from psycopg import sql

from pgask.loaders import LoaderError, file_sha256, iter_files, load_file


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    sync: bool = False  # whether deletions were looked for, and so are reported

    def describe(self) -> str:
        deleted = f"{self.deleted} deleted, " if self.sync else ""
        return (f"ingested: {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {deleted}{len(self.failed)} skipped; "
                f"{self.chunks} chunks written")

    def counts(self) -> dict[str, int]:
        """The running counts, for the progress bar."""
        counts = {"added": self.added, "updated": self.updated, "unchanged": self.unchanged}
        return counts | {"skipped": len(self.failed), "chunks": self.chunks}


# --- choosing files -------------------------------------------------------------


@dataclass(frozen=True)
class FileFilter:
    """--include/--exclude globs: a file is taken when it matches an include (or none are
    given) and no exclude. A glob without "/" matches the file name (``*.md``); one with "/"
    matches the path relative to the folder given (``drafts/*``, ``**/old/*``), where ``*``
    also crosses "/". Files named explicitly are matched by their path as given."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def selects(self, relative: str) -> bool:
        if self.include and not any(_glob_matches(g, relative) for g in self.include):
            return False
        return not any(_glob_matches(g, relative) for g in self.exclude)


def _glob_matches(glob: str, relative: str) -> bool:
    if "/" not in glob:
        return fnmatchcase(relative.rsplit("/", 1)[-1], glob)
    # "**/x" also matches x at the top: fnmatch's * already crosses "/" below it.
    return fnmatchcase(relative, glob) or (glob.startswith("**/")
                                           and fnmatchcase(relative, glob[3:]))


def select_files(paths: Iterable[str], selection: FileFilter) -> Iterator[Path]:
    """The files under ``paths`` (folders recursively) that ``selection`` takes, in order."""
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for file in iter_files([root]):
                if selection.selects(file.relative_to(root).as_posix()):
                    yield file
        elif selection.selects(root.as_posix()):
            yield root


# --- writing documents ----------------------------------------------------------

_STORED_HASHES = ("SELECT source, metadata->>'sha256' FROM rag.documents"
                  " WHERE source = ANY(%s)")
_EXISTING = "SELECT id, title, content, metadata FROM rag.documents WHERE source = %s FOR UPDATE"
_INSERT = """
INSERT INTO rag.documents (source, title, content, metadata)
VALUES (%(source)s, %(title)s, %(content)s, %(metadata)s)
RETURNING id
"""
_UPDATE = """
UPDATE rag.documents SET title = %(title)s, content = %(content)s, metadata = %(metadata)s
WHERE id = %(id)s
"""
_UPDATE_METADATA = "UPDATE rag.documents SET metadata = %(metadata)s WHERE id = %(id)s"
# The chunk store of the documents pipeline, or the table that held chunks before it.
_CHUNK_TABLE = ("SELECT coalesce(to_regclass('rag.documents_chunks'),"
                " to_regclass('rag.chunks'))::text")


def ingest_paths(conn: psycopg.Connection, paths: list[str], progress: bool = True, *,
                 sync: bool = False, selection: FileFilter | None = None) -> IngestSummary:
    """Upsert the documents for ``paths``; with ``sync``, delete those of vanished files."""
    files = list(select_files(paths, selection or FileFilter()))
    summary = IngestSummary(sync=sync)
    stored = _stored_hashes(conn, [str(f) for f in files])
    chunk_table = conn.execute(_CHUNK_TABLE).fetchone()[0]
    bar = _progress_bar(len(files)) if progress else None
    for path in files:
        try:
            _ingest_one(conn, path, stored.get(str(path)), chunk_table, summary)
        except LoaderError as exc:
            summary.failed.append((str(path), str(exc)))
        except psycopg.DataError as exc:
            summary.failed.append((str(path), str(exc).strip()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(summary.counts(), refresh=False)
    if bar is not None:
        bar.close()
    if sync:
        folders = [Path(p) for p in paths if Path(p).is_dir()]
        summary.deleted = _delete_vanished(conn, folders, files)
    return summary


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True, mininterval=0.5,
                file=sys.stderr)


def _stored_hashes(conn: psycopg.Connection, sources: list[str]) -> dict[str, str | None]:
    return dict(conn.execute(_STORED_HASHES, (sources,)).fetchall())


def _ingest_one(conn: psycopg.Connection, path: Path, stored_hash: str | None,
                chunk_table: str | None, summary: IngestSummary) -> None:
    if stored_hash is not None and stored_hash == file_sha256(path):
        summary.unchanged += 1  # same bytes: not parsed, not written
        return
    document = load_file(path)
    row = {"source": document.source, "title": document.title, "content": document.content,
           "metadata": json.dumps(document.metadata)}
    with conn.transaction():
        existing = conn.execute(_EXISTING, (document.source,)).fetchone()
        if existing is None:
            (row["id"],) = conn.execute(_INSERT, row).fetchone()
            summary.added += 1
        elif (existing[1], existing[2]) == (document.title, document.content):
            # Same text from different bytes (or a row from before hashes were recorded):
            # record the new hash so the next run skips the file, but embed nothing.
            if existing[3] != document.metadata:
                conn.execute(_UPDATE_METADATA, {"metadata": row["metadata"], "id": existing[0]})
            summary.unchanged += 1
            return
        else:
            row["id"] = existing[0]
            conn.execute(_UPDATE, row)
            summary.updated += 1
        summary.chunks += _chunk_count(conn, chunk_table, row["id"])


def _chunk_count(conn: psycopg.Connection, chunk_table: str | None, document_id: int) -> int:
    if chunk_table is None:
        return 0  # no chunk store yet: chunks are written later
    schema, name = chunk_table.split(".", 1)
    query = sql.SQL("SELECT count(*) FROM {} WHERE document_id = %s").format(
        sql.Identifier(schema, name))
    # Passed as text: the pipeline's store keys documents by text, rag.chunks by bigint.
    return conn.execute(query, (str(document_id),)).fetchone()[0]


# --- deleting documents of vanished files ---------------------------------------

_UNDER_FOLDER = """
SELECT id, source, metadata->>'path' FROM rag.documents
WHERE starts_with(metadata->>'path', %s)
"""
_DELETE = "DELETE FROM rag.documents WHERE id = %s"


def _delete_vanished(conn: psycopg.Connection, folders: list[Path], files: list[Path]) -> int:
    """Delete the documents under ``folders`` whose file is gone or was just re-keyed.

    ``files`` are this run's files; a document whose source is one of them is current.
    """
    current_sources = {str(f) for f in files}
    current_paths = {str(f.resolve()) for f in files}
    deleted = 0
    for folder in folders:
        prefix = str(folder.resolve()).rstrip("/") + "/"
        for document_id, source, path in conn.execute(_UNDER_FOLDER, (prefix,)).fetchall():
            if source in current_sources:
                continue
            if path in current_paths or not os.path.lexists(path):
                conn.execute(_DELETE, (document_id,))  # autocommit: one transaction each
                deleted += 1
    return deleted


# --- the command ----------------------------------------------------------------


def cmd_ingest(args, connect) -> int:
    # pypdf logs every repair it makes to a damaged file; the reason a file is skipped is
    # reported below, so these would only tear the progress bar.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    selection = FileFilter(tuple(args.include), tuple(args.exclude))
    with connect(args) as conn:
        summary = ingest_paths(conn, args.paths, progress=not args.quiet, sync=args.sync,
                               selection=selection)
    print(summary.describe())
    for path, reason in summary.failed:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def add_ingest_parser(sub, connect) -> None:
    """Registers `pgask ingest`; `connect(args)` opens the database connection."""
    ing = sub.add_parser(
        "ingest", help="load Markdown, text, HTML, PDF and DOCX files as documents",
        description="Each file becomes one row of rag.documents keyed by its path; its chunks "
        "are embedded by the database. Unchanged files are skipped; files that cannot be "
        "read are reported and skipped, and the exit code is then 1.")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    ing.add_argument("--sync", action="store_true",
                     help="also delete the documents of files that disappeared from the "
                     "folders given (only documents that pgask ingest loaded from there)")
    ing.add_argument("--include", action="append", default=[], metavar="GLOB",
                     help="only files matching GLOB (repeatable): '*.md' matches names, "
                     "'guides/*' paths relative to the folder given")
    ing.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="skip files matching GLOB (repeatable; same rules as --include)")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ing.set_defaults(func=lambda args: cmd_ingest(args, connect))
