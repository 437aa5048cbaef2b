"""A BEIR corpus built from files on disk, for evaluation sets whose documents we may not copy.

Some of our question sets judge documents that come from elsewhere: the PostgreSQL manual
installed by Debian's postgresql-doc-15, the runbooks beside the checkout. Their folder under
tests/data holds only queries.jsonl, qrels/ and a ``corpus-source.json`` saying which files
make the corpus::

    {"root": "/usr/share/doc/postgresql-doc-15/html",
     "include": ["sql-*.html", "indexes*.html"], "exclude": []}

Each file is read by pgask's own loader (pgask.loaders.load_file), so a document's title and
text are exactly what `pgask ingest` stores for it; its id is its path relative to the root
("sql-createindex.html", "node/NodeClockSkewDetected.md"), which is what the qrels name.
``include``/``exclude`` follow `pgask ingest`'s --include/--exclude rules.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pgask.ingest import FileFilter, select_files
from pgask.loaders import LoaderError, load_file

SOURCE_FILE = "corpus-source.json"


def corpus_source(folder: str | Path) -> dict | None:
    """The folder's corpus-source.json as a dict, or None when it has none."""
    path = Path(folder) / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        source = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from None
    if not isinstance(source, dict) or not isinstance(source.get("root"), str):
        raise ValueError(f"{path}: expected an object with a \"root\" folder")
    for key in ("include", "exclude"):
        globs = source.get(key, [])
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ValueError(f"{path}: \"{key}\" must be a list of globs, got {globs!r}")
    return source


def build_corpus(root: str | Path, include=(), exclude=()) -> dict[str, tuple[str, str]]:
    """doc id (path relative to root) -> (title, text) for the files under ``root`` that the
    globs select, in path order; raises ValueError when the root is missing, a file cannot be
    read or nothing is selected."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"corpus folder {root} does not exist")
    corpus: dict[str, tuple[str, str]] = {}
    for path in select_files([str(root)], FileFilter(tuple(include), tuple(exclude))):
        try:
            document = load_file(path)
        except LoaderError as exc:
            raise ValueError(f"corpus file cannot be read: {exc}") from None
        corpus[path.relative_to(root).as_posix()] = (document.title, document.content)
    if not corpus:
        raise ValueError(f"no file under {root} matches include {list(include)} "
                         f"exclude {list(exclude)}")
    return corpus


def corpus_digest(corpus: dict[str, tuple[str, str]]) -> str:
    """A hash of the corpus's ids, titles and texts: the eval pipeline is keyed by it, so an
    upgraded manual (or loader) gets a fresh pipeline rather than stale vectors."""
    data = json.dumps(sorted((k, *v) for k, v in corpus.items()), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()

