"""Column references in a pipeline's SQL fragments, so source DDL can be followed.

A pipeline stores SQL fragments over its source row aliased "s" (key, content, title,
metadata; content may be an expression the user wrote). When a source column is renamed, the
event trigger of sql/ rewrites each fragment with `rename`; `references` tells which columns a
fragment uses, so a dropped one is noticed. Pure functions over SQL text: a small lexer that
skips string literals, dollar quotes and comments, and never touches a function name, a type
after `::`, or a name qualified by anything but `s.`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

_IDENT = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class Name(NamedTuple):
    start: int
    end: int
    name: str  # as PostgreSQL resolves it: unquoted names folded to lower case


def _quote_ident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _skip_string(sql: str, i: int, escapes: bool) -> int:
    """The index after the literal whose opening quote is at i."""
    i += 1
    while i < len(sql):
        if escapes and sql[i] == "\\":
            i += 2
            continue
        if sql[i] == "'":
            if i + 1 < len(sql) and sql[i + 1] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _tokens(sql: str) -> Iterator[tuple[str, int, int, str]]:
    """(kind, start, end, value): kind 'name' (value folded or unquoted), or 'punct'."""
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "'":
            i = _skip_string(sql, i, escapes=False)
        elif c in "eE" and i + 1 < n and sql[i + 1] == "'":
            i = _skip_string(sql, i + 1, escapes=True)
        elif c == "$" and (m := _DOLLAR.match(sql, i)):
            j = sql.find(m.group(0), m.end())
            i = n if j < 0 else j + len(m.group(0))
        elif c == '"':
            j = i + 1
            value = []
            while j < n:
                if sql[j] == '"':
                    if j + 1 < n and sql[j + 1] == '"':
                        value.append('"')
                        j += 2
                        continue
                    break
                value.append(sql[j])
                j += 1
            yield "name", i, j + 1, "".join(value)
            i = j + 1
        elif c.isdigit():
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "."):
                j += 1
            i = j
        elif m := _IDENT.match(sql, i):
            yield "name", i, m.end(), m.group(0).lower()
            i = m.end()
        else:
            yield "punct", i, i + 1, c
            i += 1


def column_names(sql: str) -> list[Name]:
    """The names in `sql` that can be columns of the row "s": unqualified or qualified by s.,
    not a function (followed by "("), not a type (after "::"), not the alias itself."""
    tokens = list(_tokens(sql))
    found = []
    for k, (kind, start, end, value) in enumerate(tokens):
        if kind != "name":
            continue
        before = [t[3] for t in tokens[max(0, k - 2):k]]
        after = tokens[k + 1][3] if k + 1 < len(tokens) else None
        if after in ("(", "."):
            continue  # a function call, or a qualifier (s. itself, a schema)
        if before[-1:] == ["."] and before[-2:-1] != ["s"]:
            continue  # qualified by something else than the source row
        if before[-1:] == [":"] and k >= 2 and tokens[k - 2][3] == ":":
            continue  # ::type
        found.append(Name(start, end, value))
    return found


def references(sql: str, columns: set[str] | list[str]) -> set[str]:
    """Which of `columns` the fragment uses."""
    wanted = set(columns)
    return {n.name for n in column_names(sql) if n.name in wanted}


def rename(sql: str, old: str, new: str) -> str:
    """The fragment with column `old` of the source row renamed to `new`."""
    out = []
    last = 0
    for name in column_names(sql):
        if name.name == old:
            out.append(sql[last:name.start])
            out.append(_quote_ident(new))
            last = name.end
    out.append(sql[last:])
    return "".join(out)


def to_placeholders(sql: str, placeholders: dict[str, str]) -> str:
    """The fragment with every column of the source row named in `placeholders` replaced by
    its placeholder (a plain identifier), in one pass: the reader function of a pipeline
    (sql/075_source_binding.sql) keeps its SQL in this form and puts the columns' current
    names back in when it runs, so a renamed column needs no new function."""
    out = []
    last = 0
    for name in column_names(sql):
        if name.name in placeholders:
            out.append(sql[last:name.start])
            out.append(placeholders[name.name])
            last = name.end
    out.append(sql[last:])
    return "".join(out)
