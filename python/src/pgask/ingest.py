"""`pgask ingest`: files on disk become rows of rag.documents, upserted by a canonical path.

A file's key (rag.documents.source) is its canonical path: absolute with symlinks resolved,
written relative to ``--root`` when one is given (``guides/a.md``), so the same file is one
document however it was named on the command line (``/abs/kb`` or ``kb``). The root is
recorded in the document's metadata (``root``: ``/`` without ``--root``), next to ``path``
(the absolute resolved path). A document keyed by another spelling of the same file (written
by an older pgask, which keyed files by the path as typed, or under another root) is re-keyed
in place, keeping its id; duplicates of it are deleted. A document keyed by the absolute path
of a file (no symlink on the way) keeps its key: nothing is rewritten for it.

The database does the chunking and embedding (the documents pipeline), so what is searched is
exactly what any SQL client inserting documents would get; this module only writes
rag.documents rows. Each file is its own transaction: one bad file is reported and skipped,
the rest still land.

A file whose bytes hash to the sha256 stored in its document's metadata is unchanged and is
not even parsed; one whose text and title are unchanged is not rewritten (at most its metadata
is), so a second run over the same files updates nothing and embeds nothing.

With ``--sync``, documents whose files disappeared from a synced directory are deleted. A
document belongs to a directory when its metadata.path (the absolute path this command
records) lies under it and its metadata has the fields the file loaders record (format, path,
modified, bytes), so documents written any other way are never touched, whatever `path`
their metadata has; nor are they re-keyed or deleted as another spelling of a file. Files that
still exist are kept even when --include/--exclude leave them out of this run.
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
from pgask.progress import progress_bar


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

# A file is skipped unparsed when its document has its bytes' hash and its current path (a
# folder moved under --root is parsed once, to record where it is now).
# A document this command wrote (now or by an older pgask): its metadata has the fields the
# file loaders record (pgask.loaders.files.load_file). Only such documents are matched by
# their metadata.path: an application's own document may have a `path` (a common key name)
# naming a file, and is neither an older spelling of it to re-key, a duplicate to delete, nor
# a vanished file of a synced folder.
_INGESTED = "metadata ?& array['format', 'path', 'modified', 'bytes']"
_STORED_HASHES = ("SELECT source, metadata->>'sha256' || ' ' || (metadata->>'path')"
                  " FROM rag.documents WHERE source = ANY(%s)")
_EXISTING = "SELECT id, title, content, metadata FROM rag.documents WHERE source = %s FOR UPDATE"
# The same file under other keys: the oldest is re-keyed, the others were duplicates.
_OTHER_KEYS = ("SELECT id, title, content, metadata FROM rag.documents"
               " WHERE metadata->>'path' = %s AND source <> %s AND " + _INGESTED
               + " ORDER BY id FOR UPDATE")
_REKEY = "UPDATE rag.documents SET source = %s WHERE id = %s"
_STALE = ("SELECT DISTINCT metadata->>'path' FROM rag.documents"
          " WHERE metadata->>'path' = ANY(%s) AND NOT source = ANY(%s) AND " + _INGESTED)
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


class OutsideRoot(LoaderError):
    """A file that is not under --root has no key relative to it."""


def document_key(path: str | os.PathLike, root: Path | None = None) -> str:
    """The key of a file's document: its resolved absolute path, relative to ``root`` (a
    resolved folder) when one is given, in POSIX form."""
    resolved = Path(path).resolve()
    if root is None:
        return str(resolved)
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        raise OutsideRoot(f"{path}: not under --root {root}") from None


def ingest_paths(conn: psycopg.Connection, paths: list[str], progress: bool = True, *,
                 sync: bool = False, selection: FileFilter | None = None,
                 root: str | None = None) -> IngestSummary:
    """Upsert the documents for ``paths``; with ``sync``, delete those of vanished files.
    ``root``: the folder keys are relative to (default: absolute keys)."""
    root_path = Path(root).resolve() if root is not None else None
    files = list(select_files(paths, selection or FileFilter()))
    summary = IngestSummary(sync=sync)
    keys: dict[Path, str] = {}
    for path in files:
        try:
            keys[path] = document_key(path, root_path)
        except OutsideRoot as exc:
            summary.failed.append((str(path), str(exc)))
    files = [f for f in files if f in keys]
    stored = _stored_hashes(conn, list(keys.values()))
    # Files also known under another key: never skipped as unchanged, so that is put right.
    stale = {p for (p,) in conn.execute(_STALE, ([str(f.resolve()) for f in files],
                                                 list(keys.values()))).fetchall()}
    chunk_table = conn.execute(_CHUNK_TABLE).fetchone()[0]
    bar = progress_bar(len(files), "ingest", "file", mininterval=0.5) if progress else None
    for path in files:
        try:
            is_stale = str(path.resolve()) in stale
            _ingest_one(conn, path, keys[path], str(root_path or "/"),
                        None if is_stale else stored.get(keys[path]), chunk_table, summary,
                        is_stale)
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
        summary.deleted = _delete_vanished(conn, folders, files, set(keys.values()))
    return summary


def _stored_hashes(conn: psycopg.Connection, sources: list[str]) -> dict[str, str | None]:
    return dict(conn.execute(_STORED_HASHES, (sources,)).fetchall())


def _ingest_one(conn: psycopg.Connection, path: Path, key: str, root: str,
                stored_hash: str | None, chunk_table: str | None,
                summary: IngestSummary, stale: bool = False) -> None:
    if stored_hash is not None and stored_hash == f"{file_sha256(path)} {path.resolve()}":
        summary.unchanged += 1  # same bytes: not parsed, not written
        return
    document = load_file(path)
    metadata = document.metadata | {"root": root}
    row = {"source": key, "title": document.title, "content": document.content,
           "metadata": json.dumps(metadata)}
    with conn.transaction():
        existing = conn.execute(_EXISTING, (key,)).fetchone()
        # Known under other keys (an older spelling, another root): the oldest is re-keyed
        # in place when none has this key yet; the others were duplicates.
        others = conn.execute(_OTHER_KEYS, (metadata["path"], key)).fetchall() if stale else []
        if existing is None and others:
            existing = others.pop(0)
            conn.execute(_REKEY, (key, existing[0]))
        for duplicate in others:
            conn.execute(_DELETE, (duplicate[0],))
        stale = stale and existing is not None
        if stale:
            summary.updated += 1
        if existing is None:
            (row["id"],) = conn.execute(_INSERT, row).fetchone()
            summary.added += 1
        elif (existing[1], existing[2]) == (document.title, document.content):
            # Same text from different bytes (or a row from before hashes were recorded):
            # record the new hash so the next run skips the file, but embed nothing.
            if existing[3] != metadata:
                conn.execute(_UPDATE_METADATA, {"metadata": row["metadata"], "id": existing[0]})
            if not stale:
                summary.unchanged += 1
            return
        else:
            row["id"] = existing[0]
            conn.execute(_UPDATE, row)
            summary.updated += 0 if stale else 1
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
WHERE starts_with(metadata->>'path', %s) AND """ + _INGESTED
_DELETE = "DELETE FROM rag.documents WHERE id = %s"


def _delete_vanished(conn: psycopg.Connection, folders: list[Path], files: list[Path],
                     current_sources: set[str]) -> int:
    """Delete the documents under ``folders`` whose file is gone or is known under another
    key.

    ``files`` are this run's files, ``current_sources`` their keys; a document whose source is
    one of them is current.
    """
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
                               selection=selection, root=args.root)
    print(summary.describe())
    for path, reason in summary.failed:
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def add_ingest_parser(sub, connect) -> None:
    """Registers `pgask ingest`; `connect(args)` opens the database connection."""
    ing = sub.add_parser(
        "ingest", help="load Markdown, text, HTML, PDF and DOCX files as documents",
        description="Each file becomes one row of rag.documents keyed by its canonical path "
        "(absolute, symlinks resolved; relative to --root when given), so a file is one "
        "document however it is named; its chunks are embedded by the database. Unchanged "
        "files are skipped; files that cannot be read are reported and skipped, and the exit "
        "code is then 1.")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    ing.add_argument("--sync", action="store_true",
                     help="also delete the documents of files that disappeared from the "
                     "folders given (only documents that pgask ingest loaded from there)")
    ing.add_argument("--include", action="append", default=[], metavar="GLOB",
                     help="only files matching GLOB (repeatable): '*.md' matches names, "
                     "'guides/*' paths relative to the folder given")
    ing.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="skip files matching GLOB (repeatable; same rules as --include)")
    ing.add_argument("--root", metavar="DIR",
                     help="key documents by their path relative to DIR (recorded in their "
                     "metadata as root), e.g. to keep keys when the folder moves; files "
                     "outside DIR are skipped. Default: absolute paths")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ing.set_defaults(func=lambda args: cmd_ingest(args, connect))
