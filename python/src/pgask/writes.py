"""Writes for the Python clients: texts into a pipeline's source table, where its capture
triggers queue (or, in sync mode, embed) them as for any other write.

pgask's write path is the source table itself (there is no rag.add function: an INSERT is the
API), so a client writes the table the pipeline reads, through the row it names:
- the `documents` pipeline (rag.documents): one row per text, upserted on `source`, the
  documents' natural key (`id` is generated); the caller's ids are those sources, and its
  metadata goes into the `metadata` column as it is;
- any other pipeline: one row per text in its source table, the text in the content column,
  each metadata key in the column of that name (a key that is no column fails with the
  database's 42703), the id in the single-column primary key (left to its default when no
  ids are given), upserted on that key. A pipeline whose content is an SQL expression, or
  whose key has several columns, has no one column to write: ValueError, write it with SQL.

ids are, for every pipeline, what `store_id` gives for a search hit, so a hit can be deleted.
The statements are built here once for Client and AsyncClient, which only run them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

DOCUMENTS = "rag.documents"

# Another pipeline's source, its content and title fragments, and its key's columns. Reading
# rag.pipelines takes pgask_admin or pgask_worker (docs/security.md); the `documents`
# pipeline's table is known without it, so any role that may write rag.documents can add.
TARGET_SQL = (
    "SELECT p.source::text, p.content_sql, p.title_sql,"
    " (SELECT array_agg(a.attname::text ORDER BY k.ord)"
    "  FROM unnest(p.key_attnums) WITH ORDINALITY AS k (attnum, ord)"
    "  JOIN pg_catalog.pg_attribute AS a ON a.attrelid = p.source AND a.attnum = k.attnum)"
    " FROM rag.pipelines AS p WHERE p.name = %s")


@dataclass(frozen=True)
class Target:
    """Where a pipeline's texts are written."""

    table: str  # regclass text: public.tickets shows as tickets
    content: str | None  # the content column; None: content is an expression
    title: str | None  # the title column, if the pipeline has one
    key: tuple[str, ...]

    @property
    def documents(self) -> bool:
        return self.table == DOCUMENTS


def is_documents(pipeline: str | None) -> bool:
    """Whether a pipeline argument names the `documents` pipeline (None: rag.search's default,
    which is `documents` while it exists: the install makes it)."""
    return pipeline is None or pipeline == "documents"


DOCUMENTS_TARGET = Target(table=DOCUMENTS, content="content", title="title", key=("source",))


# A column as rag._column_sql writes it (s.%I); the title wraps it as coalesce((...)::text, '').
_COLUMN = r's\.(?P<column>"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)'
_CONTENT = re.compile(rf"{_COLUMN}")
_TITLE = re.compile(rf"coalesce\(\({_COLUMN}\)::text, ''\)")


def _column(pattern: re.Pattern, fragment: str | None) -> str | None:
    """The column an SQL fragment is, if it is one column (not an expression over some)."""
    match = pattern.fullmatch(fragment or "")
    if match is None:
        return None
    name = match["column"]
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def target_from_row(pipeline: str | None, row: tuple | None) -> Target:
    if row is None:
        raise LookupError(f"pipeline {pipeline!r} does not exist")
    table, content_sql, title_sql, key = row
    return Target(table=table, content=_column(_CONTENT, content_sql),
                  title=_column(_TITLE, title_sql),
                  key=tuple(key or ()))


def _name_parts(name: str) -> list[str]:
    """The identifiers of a qualified name as regclass writes it: quoted where needed
    ("Tickets", "tick.ets", "ti""ckets"), so not split at every dot nor kept with quotes."""
    parts, i = [], 0
    while i < len(name):
        if name[i] == '"':
            j, part = i + 1, []
            while True:
                if j >= len(name):
                    raise ValueError(f"unterminated quoted name in {name!r}")
                if name[j] == '"':
                    if name[j + 1:j + 2] == '"':
                        part.append('"')
                        j += 2
                        continue
                    j += 1
                    break
                part.append(name[j])
                j += 1
            parts.append("".join(part))
        else:
            j = name.find(".", i)
            j = len(name) if j < 0 else j
            parts.append(name[i:j])
        i = j
        if i < len(name):
            if name[i] != ".":
                raise ValueError(f"not a qualified name: {name!r}")
            i += 1
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(f"not a table name: {name!r}")
    return parts


def _table(target: Target) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in _name_parts(target.table))


def _key(target: Target) -> str:
    if len(target.key) != 1:
        raise ValueError(f"{target.table} has a key of {len(target.key)} columns: write it "
                         "with SQL (the clients write tables keyed by one column)")
    return target.key[0]


def insert_statement(target: Target, text: str, metadata: dict[str, Any] | None,
                     id: str | None, title: str | None = None
                     ) -> tuple[sql.Composable, list[Any]]:
    """One text's upsert, RETURNING the id that store_id gives its hits."""
    if not isinstance(text, str):
        raise TypeError(f"texts must be strings, got {type(text).__name__}")
    if target.documents:
        return (sql.SQL(
            "INSERT INTO rag.documents (source, title, content, metadata)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET title = EXCLUDED.title,"
            " content = EXCLUDED.content, metadata = EXCLUDED.metadata RETURNING source"),
                [id or str(uuid.uuid4()), title or "", text, Jsonb(metadata or {})])
    if target.content is None:
        raise ValueError(f"the content of {target.table}'s pipeline is an SQL expression: "
                         "there is no one column to write; insert the row with SQL")
    key = _key(target)
    values = {**(metadata or {}), target.content: text}
    if title is not None and target.title is not None:
        values[target.title] = title
    if id is not None:
        values[key] = id
    columns = list(values)
    updates = [c for c in columns if c != key]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {} RETURNING {}::text"
                        ).format(
        _table(target), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)), sql.Identifier(key),
        sql.SQL("UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
        if updates else sql.SQL("NOTHING"),
        sql.Identifier(key))
    return statement, [Jsonb(v) if isinstance(v, dict) else v for v in values.values()]


def delete_statement(target: Target, ids: Sequence[str]) -> tuple[sql.Composable, list[Any]]:
    """Deletes the rows of these ids (the triggers remove their chunks)."""
    column = "source" if target.documents else _key(target)
    return (sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s)").format(
        _table(target), sql.Identifier(column)), [[str(i) for i in ids]])


def store_id(pipeline: str | None, source: str, document_id: str) -> str:
    """A hit's id as the writes name its row: rag.documents' source, else the key."""
    return source if is_documents(pipeline) else document_id


def batch(texts: Sequence[str], metadatas: Sequence[dict] | None, ids: Sequence[str] | None,
          titles: Sequence[str | None] | None) -> list[tuple[str, dict | None, str | None,
                                                              str | None]]:
    """The texts with their metadata, id and title, checking that the lists line up."""
    texts = list(texts)
    for name, values in (("metadatas", metadatas), ("ids", ids), ("titles", titles)):
        if values is not None and len(values) != len(texts):
            raise ValueError(f"{name} has {len(values)} entries for {len(texts)} texts")
    return [(text, metadatas[i] if metadatas else None,
             str(ids[i]) if ids and ids[i] is not None else None,
             titles[i] if titles else None) for i, text in enumerate(texts)]
