"""Prepared statements for the PL/Python code, kept per backend.

plpy.prepare parses and plans a statement; the modules that run SQL on every call (search,
answers) prepare each distinct text once. The cache is bounded because texts vary with
pipelines and filter shapes, not only with the code.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_PLANS = 128

_plans: OrderedDict[tuple, object] = OrderedDict()


def prepared(plpy, sql: str, types: list[str]):
    """The plan for `sql` with parameter `types`, prepared on first use in this backend."""
    key = (sql, tuple(types))
    plan = _plans.get(key)
    if plan is None:
        plan = plpy.prepare(sql, types)
        _plans[key] = plan
        if len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan
