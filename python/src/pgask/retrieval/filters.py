"""rag.search's metadata filter: a JSON object translated into parameterised SQL.

Grammar (MongoDB-like, the shape pgvector users know from other stores):

    {"lang": "en"}                              equality
    {"lang": {"$in": ["en", "de"]}}             one of ($nin: none of)
    {"year": {"$gte": 2020, "$lt": 2024}}       numeric range ($gt, $gte, $lt, $lte)
    {"published": {"$gte": "2024-01-01"}}       date range: ISO 8601 strings compare as
                                                timestamps
    {"lang": {"$ne": "en"}}, {"draft": {"$exists": false}}
    {"$or": [{...}, {...}]}, {"$and": [...]}    combinations

Keys are top-level keys of the chunk's metadata (which holds its document's metadata). Keys and
values never become SQL text: each is a query parameter; only operators from a fixed table and
parameter numbers are written into the query.
"""

from __future__ import annotations

from pgask import jsonlite

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:
    import datetime as dt

MAX_KEY_LENGTH = 256
MAX_TERMS = 100
# Every JSON object and condition is a node ({} included): 200,000 empty objects cost
# seconds and plans; nesting beyond the depth exhausts Python's stack. rag.settings
# max_filter_nodes and max_filter_depth override these.
MAX_NODES = 1_000
MAX_DEPTH = 32

_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS)


class FilterError(ValueError):
    """The filter is not valid; the message names the key and what was expected."""


class CompiledFilter:
    """A boolean SQL expression over the chunk row aliased `c`, with its parameters.
    Parameter numbers start after `first_param - 1` parameters the caller already uses."""

    # A plain class, not a dataclass: importing dataclasses costs a backend ~20 ms (issue 31).
    def __init__(self, sql: str, params: list | None = None,
                 types: list[str] | None = None) -> None:
        self.sql = sql
        self.params = params if params is not None else []
        self.types = types if types is not None else []

    def __repr__(self) -> str:
        return f"CompiledFilter({self.sql!r}, {self.params!r}, {self.types!r})"


class _Compiler:
    def __init__(self, first_param: int, max_nodes: int, max_depth: int) -> None:
        self.first_param = first_param
        self.params: list = []
        self.types: list[str] = []
        self.terms = 0
        self.nodes = 0
        self.max_nodes = max_nodes
        self.max_depth = max_depth

    def count_node(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise FilterError(f"a filter may have at most {self.max_nodes} nodes (objects and "
                              "conditions, {} included; rag.settings max_filter_nodes)")
        if depth > self.max_depth:
            raise FilterError(f"a filter may be nested at most {self.max_depth} deep "
                              "(rag.settings max_filter_depth)")

    def param(self, value, sql_type: str) -> str:
        self.params.append(value)
        self.types.append(sql_type)
        return f"${self.first_param + len(self.params) - 1}::{sql_type}"

    def node(self, spec, where: str, depth: int = 1) -> str:
        self.count_node(depth)
        if not isinstance(spec, dict):
            raise FilterError(f"{where} must be a JSON object, got {_show(spec)}")
        if not spec:
            return "true"
        parts = []
        for key, value in spec.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise FilterError(f"{key} needs a non-empty array of filters, got "
                                      f"{_show(value)}")
                inner = [self.node(v, f"an element of {key}", depth + 1) for v in value]
                joiner = " AND " if key == "$and" else " OR "
                parts.append("(" + joiner.join(inner) + ")")
            elif key.startswith("$"):
                raise FilterError(f"unknown combinator {key!r}: expected $and or $or, or a "
                                  "metadata key")
            else:
                self.count_node(depth + 1)
                parts.append(self.key(key, value))
        return "(" + " AND ".join(parts) + ")"

    def key(self, key: str, condition) -> str:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise FilterError(f"metadata keys must be 1-{MAX_KEY_LENGTH} characters, got "
                              f"{_show(key)}")
        if isinstance(condition, dict) and any(k.startswith("$") for k in condition):
            if not all(k.startswith("$") for k in condition):
                raise FilterError(f"key {key!r}: mix of operators and plain keys in "
                                  f"{_show(condition)}")
            return " AND ".join(self.operator(key, op, operand)
                                for op, operand in condition.items())
        return self.operator(key, "$eq", condition)

    def operator(self, key: str, op: str, operand) -> str:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(f"a filter may have at most {MAX_TERMS} conditions")
        if op not in _OPERATORS:
            raise FilterError(f"key {key!r}: unknown operator {op!r}; expected one of "
                              + ", ".join(_OPERATORS))
        k = self.param(key, "text")
        if op in ("$eq", "$ne"):
            # Containment can use the chunk table's GIN index on metadata.
            sql = f"c.metadata @> jsonb_build_object({k}, {self.param(_json(operand), 'jsonb')})"
            return sql if op == "$eq" else f"NOT coalesce({sql}, false)"
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"key {key!r}: {op} needs a non-empty array of values, got "
                                  f"{_show(operand)}")
            values = self.param([_json(v) for v in operand], "jsonb[]")
            sql = f"(c.metadata -> {k}) = ANY({values})"
            return sql if op == "$in" else f"NOT coalesce({sql}, false)"
        if op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"key {key!r}: $exists needs true or false, got "
                                  f"{_show(operand)}")
            return ("" if operand else "NOT ") + f"(c.metadata ? {k})"
        return self.comparison(key, k, _COMPARISONS[op], op, operand)

    def comparison(self, key: str, k: str, sql_op: str, op: str, operand) -> str:
        if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
            raise FilterError(f"key {key!r}: {op} needs a number or an ISO 8601 date, got "
                              f"{_show(operand)}")
        if isinstance(operand, (int, float)):
            # Only numeric values take part: a string "2020" is not compared with 2020.
            return (f"(CASE WHEN jsonb_typeof(c.metadata -> {k}) = 'number'"
                    f" THEN (c.metadata ->> {k})::numeric END) {sql_op} "
                    + self.param(operand, "numeric"))
        if _as_timestamp(operand) is None:
            raise FilterError(f"key {key!r}: {op} needs a number or an ISO 8601 date such as "
                              f"'2024-01-31' or '2024-01-31T12:00:00Z', got {_show(operand)}")
        return (f"rag._as_timestamptz(c.metadata ->> {k}) {sql_op} "
                + self.param(operand, "timestamptz"))


def _as_timestamp(text: str) -> dt.datetime | None:
    import datetime as dt  # here: only date comparisons need it (~2 ms of a first search)

    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _json(value) -> str:
    return jsonlite.dumps(value)


def _show(value) -> str:
    text = jsonlite.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def compile_filter(spec, first_param: int = 1, max_nodes: int = MAX_NODES,
                   max_depth: int = MAX_DEPTH) -> CompiledFilter:
    """The SQL condition for a filter (None or {} match everything); raises FilterError."""
    if spec is None:
        return CompiledFilter("true")
    compiler = _Compiler(first_param, max_nodes, max_depth)
    sql = compiler.node(spec, "filter")
    return CompiledFilter(sql, compiler.params, compiler.types)
