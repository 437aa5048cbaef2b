"""`pgask ingest --sync`: adds, updates, deletes, leaves unchanged files and other documents
alone, and filters with --include/--exclude. Runs ingest_paths against a real database, and
the command itself for its output and exit code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from commands import pgask
from samples import make_docx, make_pdf

from fix_db import add_document
from pgask.ingest import FileFilter, IngestSummary, ingest_paths, select_files


@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "vacuum.md").write_text("# VACUUM\n\nVACUUM reclaims storage held by dead rows.\n")
    (docs / "notes.txt").write_text("Autovacuum runs VACUUM and ANALYZE in the background.\n")
    (docs / "sub" / "gin.html").write_text(
        "<title>GIN</title><h1>GIN</h1><p>GIN indexes make full text search fast.</p>")
    (docs / "sub" / "guide.pdf").write_bytes(make_pdf([["BRIN indexes summarise ranges."]]))
    (docs / "sub" / "install.docx").write_bytes(make_docx())
    return docs


def sync(db, *paths, include=(), exclude=()) -> IngestSummary:
    return ingest_paths(db, [str(p) for p in paths], progress=False, sync=True,
                        selection=FileFilter(tuple(include), tuple(exclude)))


def counts(summary: IngestSummary) -> tuple[int, int, int, int, int]:
    return (summary.added, summary.updated, summary.unchanged, summary.deleted,
            len(summary.failed))


def documents(db) -> dict[str, tuple]:
    """source -> (id, xmin, updated_at): any UPDATE of a row changes its xmin."""
    rows = db.execute("SELECT source, id, xmin::text, updated_at FROM rag.documents").fetchall()
    return {Path(source).name: rest for source, *rest in rows}


def chunk_ids(db) -> list[int]:
    (table,) = db.execute("SELECT coalesce(to_regclass('rag.documents_chunks'),"
                          " to_regclass('rag.chunks'))::text").fetchone()
    return [row[0] for row in db.execute(f"SELECT id FROM {table} ORDER BY id")]


def test_first_sync_adds_every_file(db, folder):
    summary = sync(db, folder)
    assert counts(summary) == (5, 0, 0, 0, 0)
    assert summary.chunks >= 5
    assert set(documents(db)) == {"vacuum.md", "notes.txt", "gin.html", "guide.pdf",
                                  "install.docx"}
    assert summary.describe() == (f"ingested: 5 added, 0 updated, 0 unchanged, 0 deleted, "
                                  f"0 skipped; {summary.chunks} chunks written")


def test_second_sync_without_changes_writes_nothing(db, folder):
    sync(db, folder)
    before, chunks = documents(db), chunk_ids(db)
    for file in folder.rglob("*.*"):
        os.utime(file, (1e9, 1e9))  # a new mtime alone is no change
    summary = sync(db, folder)
    assert counts(summary) == (0, 0, 5, 0, 0)
    assert summary.chunks == 0
    assert documents(db) == before
    assert chunk_ids(db) == chunks


def test_changed_file_is_updated_and_only_it(db, folder):
    sync(db, folder)
    before = documents(db)
    (folder / "vacuum.md").write_text("# VACUUM\n\nVACUUM FULL rewrites the whole table.\n")
    summary = sync(db, folder)
    assert counts(summary) == (0, 1, 4, 0, 0)
    after = documents(db)
    assert after["vacuum.md"][0] == before["vacuum.md"][0]  # same row, new content
    assert after["vacuum.md"][1:] != before["vacuum.md"][1:]
    assert {k: v for k, v in after.items() if k != "vacuum.md"} == \
        {k: v for k, v in before.items() if k != "vacuum.md"}
    (content,) = db.execute("SELECT content FROM rag.documents WHERE source LIKE '%vacuum.md'"
                            ).fetchone()
    assert "VACUUM FULL" in content


def test_new_bytes_with_the_same_text_only_record_the_new_hash(db, folder):
    page = folder / "sub" / "gin.html"
    sync(db, folder)
    query = "SELECT title, content, metadata->>'sha256' FROM rag.documents WHERE source = %s"
    title, content, old_hash = db.execute(query, (str(page),)).fetchone()
    page.write_text(page.read_text().replace("<p>", "\n\n   <p>"))  # same text once converted
    assert counts(sync(db, folder)) == (0, 0, 5, 0, 0)
    new_title, new_content, new_hash = db.execute(query, (str(page),)).fetchone()
    assert (new_title, new_content) == (title, content) and new_hash != old_hash
    before = documents(db)
    assert counts(sync(db, folder)) == (0, 0, 5, 0, 0)  # recorded: not even parsed again
    assert documents(db) == before


def test_vanished_files_are_deleted(db, folder):
    sync(db, folder)
    (folder / "notes.txt").unlink()
    shutil.rmtree(folder / "sub")
    summary = sync(db, folder)
    assert counts(summary) == (0, 0, 1, 4, 0)
    assert set(documents(db)) == {"vacuum.md"}


def test_documents_outside_the_synced_folder_are_untouched(db, folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.md").write_text("# Keep\n\nIngested from another folder.\n")
    assert counts(sync(db, other)) == (1, 0, 0, 0, 0)
    add_document(db, str(folder / "typed-in.md"), "Written with SQL, not by pgask ingest.")
    add_document(db, "elsewhere/manual.md", "Another document written with SQL.")
    sync(db, folder)
    before = documents(db)
    shutil.rmtree(folder)
    folder.mkdir()
    summary = sync(db, folder)
    assert counts(summary) == (0, 0, 0, 5, 0)
    remaining = documents(db)
    assert set(remaining) == {"keep.md", "typed-in.md", "manual.md"}
    assert all(remaining[name] == before[name] for name in remaining)


def test_plain_ingest_never_deletes(db, folder):
    sync(db, folder)
    (folder / "notes.txt").unlink()
    summary = ingest_paths(db, [str(folder)], progress=False)
    assert counts(summary) == (0, 0, 4, 0, 0)
    assert "deleted" not in summary.describe()
    assert "notes.txt" in documents(db)


def test_include_and_exclude_globs(db, folder):
    assert counts(sync(db, folder, include=["*.md", "*.txt"])) == (2, 0, 0, 0, 0)
    assert set(documents(db)) == {"vacuum.md", "notes.txt"}
    summary = sync(db, folder, exclude=["sub/*.pdf", "notes.*"])
    assert counts(summary) == (2, 0, 1, 0, 0)
    # notes.txt still exists: excluded from this run, its document is kept.
    assert set(documents(db)) == {"vacuum.md", "notes.txt", "gin.html", "install.docx"}


def test_glob_rules():
    selection = FileFilter(include=("*.md", "guides/*", "**/keep/*"), exclude=("*draft*",))
    assert selection.selects("a.md") and selection.selects("deep/down/b.md")
    assert selection.selects("guides/x/y.txt") and selection.selects("keep/z.txt")
    assert selection.selects("far/keep/z.txt")
    assert not selection.selects("other/y.txt")
    assert not selection.selects("guides/draft-1.md")
    assert FileFilter().selects("anything/at/all.txt")


def test_select_files_filters_explicit_files_and_folders(folder):
    chosen = list(select_files([str(folder), str(folder / "vacuum.md")],
                               FileFilter(include=("*.md", "*.html"))))
    assert [p.name for p in chosen] == ["gin.html", "vacuum.md", "vacuum.md"]


def test_a_respelled_folder_is_the_same_documents(db, db_url, folder):
    """Issue 30: `pgask ingest /abs/kb`, then `pgask ingest kb` from the parent folder (or
    through a symlink) made duplicates: documents were keyed by the path as typed."""
    result = pgask("ingest", "-q", str(folder), database_url=db_url)
    assert result.returncode == 0, result.stderr
    before = documents(db)
    (folder.parent / "link").symlink_to(folder)
    for typed in (folder.name, "link"):
        result = pgask("ingest", "-q", "--sync", typed, database_url=db_url, cwd=folder.parent)
        assert result.stdout.strip().startswith(
            "ingested: 0 added, 0 updated, 5 unchanged, 0 deleted"), (typed, result)
    assert counts(sync(db, folder / ".." / folder.name)) == (0, 0, 5, 0, 0)
    assert documents(db) == before  # not even rewritten
    sources = sorted(row[0] for row in db.execute("SELECT source FROM rag.documents"))
    assert sources == sorted(str(p) for p in folder.rglob("*") if p.is_file())


def test_documents_of_an_older_spelling_are_rekeyed_in_place(db, db_url, folder):
    """Rows written by an older pgask under the path as typed (docs/vacuum.md, and its
    duplicate /abs/docs/../docs/vacuum.md) become the one canonical row, keeping the oldest
    id; a row already under its absolute path is left as it is. (Every pgask recorded the
    loader's format, path, modified and bytes: only such rows are pgask ingest's.)"""
    page = folder / "vacuum.md"
    for typed in ("docs/vacuum.md", f"{folder}/../docs/vacuum.md"):
        db.execute("INSERT INTO rag.documents (source, title, content, metadata) VALUES"
                   " (%s, 'VACUUM', 'old text', jsonb_build_object('format', 'markdown',"
                   " 'path', %s::text, 'modified', '2026-11-21T00:00:00+00:00', 'bytes', 10))",
                   (typed, str(page.resolve())))
    (oldest,) = db.execute("SELECT min(id) FROM rag.documents").fetchone()
    result = pgask("ingest", "-q", "docs/vacuum.md", database_url=db_url, cwd=folder.parent)
    assert result.stdout.strip().startswith("ingested: 0 added, 1 updated, 0 unchanged"), result
    assert db.execute("SELECT id, source, metadata->>'root' FROM rag.documents").fetchall() == [
        (oldest, str(page), "/")]
    assert counts(ingest_paths(db, [str(page)], progress=False)) == (0, 0, 1, 0, 0)


def test_keys_relative_to_a_root(db, folder, tmp_path):
    (tmp_path / "elsewhere.md").write_text("# Elsewhere\n")
    summary = ingest_paths(db, [str(folder), str(tmp_path / "elsewhere.md")], progress=False,
                           root=str(folder))
    [(path, reason)] = summary.failed
    assert path.endswith("elsewhere.md") and f"not under --root {folder}" in reason
    rows = dict(db.execute("SELECT source, metadata->>'root' FROM rag.documents").fetchall())
    assert rows == {k: str(folder) for k in ("vacuum.md", "notes.txt", "sub/gin.html",
                                              "sub/guide.pdf", "sub/install.docx")}
    # The folder moves: the same keys under the new root, nothing re-embedded.
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert counts(ingest_paths(db, [str(moved)], progress=False, root=str(moved))) == (
        0, 0, 5, 0, 0)
    # Absolute keys again: the same documents, re-keyed.
    assert counts(ingest_paths(db, [str(moved)], progress=False)) == (0, 5, 0, 0, 0)
    assert db.execute("SELECT count(*) FROM rag.documents").fetchone()[0] == 5


def test_unreadable_files_are_skipped_and_their_documents_kept(db, folder):
    sync(db, folder)
    (folder / "notes.txt").write_bytes("caf\xe9".encode("latin-1"))
    summary = sync(db, folder)
    assert counts(summary) == (0, 0, 4, 0, 1)
    [(path, reason)] = summary.failed
    assert path.endswith("notes.txt") and "not valid UTF-8" in reason
    assert "notes.txt" in documents(db)


def test_sync_command_reports_and_exits_1_on_skipped_files(db, db_url, folder):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is no pdf")
    (folder / "draft.md").write_text("# Draft\n")
    result = pgask("ingest", "--sync", "--exclude", "draft*", str(folder), database_url=db_url)
    assert result.returncode == 1, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("ingested: 5 added, 0 updated, 0 unchanged, 0 deleted, 1 skipped;")
    assert f"skipped {folder / 'broken.pdf'}: {folder / 'broken.pdf'}: damaged or unreadable PDF" \
        in result.stderr
    assert "ingest: 6/6 files (100%)" in result.stderr  # progress, on stderr (a pipe: lines)
    (folder / "broken.pdf").unlink()
    again = pgask("ingest", "--sync", "-q", "--exclude", "draft*", str(folder),
                  database_url=db_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "ingested: 0 added, 0 updated, 5 unchanged, 0 deleted, 0 skipped; 0 chunks written")
    assert "skipped" not in again.stderr and "ingest:" not in again.stderr
