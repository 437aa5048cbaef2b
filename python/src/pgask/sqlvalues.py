"""Values as PL/Python hands them over from SQL: jsonb arrives as JSON text, or None for NULL."""

from __future__ import annotations

import json


def parse_json(text: str | None):
    """A jsonb argument as Python values; None for SQL NULL."""
    return None if text is None else json.loads(text)
