"""One-time tokens for rows of rag.answer_log: the answer path issues one per answer it logs,
and the log's insert policy (rag._answer_token_ok) uses it up. Only pgask's Python code, in
this backend, holds them (a role cannot run Python: PL/Python is untrusted), so a role that
may read the chunks still cannot write log rows of its own making."""

from __future__ import annotations

import secrets

_issued: set[str] = set()


def issue() -> str:
    token = secrets.token_hex(16)
    _issued.add(token)
    return token


def consume(token: str | None) -> bool:
    """Whether the token was issued and not used yet; it is used up either way."""
    if token is None or token not in _issued:
        return False
    _issued.discard(token)
    return True
