"""API keys stored with rag.set_secret: usable by pgask's code, never readable through SQL.

rag._use_secret(name) (SECURITY DEFINER, executable by members of pgask_reader and the
owner) calls `load`, which reads rag.secrets and keeps the value in this module, inside the
backend's Python interpreter; the function itself returns only whether the key exists. The
provider code, running as the caller, then takes the value with `read`. No SQL function
returns a key, and only superusers can create PL/Python functions that could look into this
module (plpython3u is untrusted), so a role that may search with a key still cannot read it.
Keys never go into messages: providers' errors pass through embedders.errors.redact.
"""

from __future__ import annotations

from pgask.embedders.errors import EmbedderError

_loaded: dict[str, str] = {}


def load(plpy, name: str) -> bool:
    """For rag._use_secret only (it runs as the owner, who may read rag.secrets)."""
    rows = plpy.execute(plpy.prepare(
        "SELECT value FROM rag.secrets WHERE name = $1", ["text"]), [name])
    if not rows:
        _loaded.pop(name, None)
        return False
    _loaded[name] = rows[0]["value"]
    return True


def read(plpy, name: str) -> str | None:
    """The key stored under `name`, for a provider call of the current role; checked on
    every call, so a role that lost pgask_reader cannot use a provider built earlier."""
    from pgask.plans import prepared

    try:
        plpy.execute(prepared(plpy, "SELECT rag._use_secret($1)", ["text"]), [name])
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) != "42501":
            raise
        role = plpy.execute("SELECT current_user AS r")[0]["r"]
        raise KeyAccessError(
            f"role {role} may not read API keys stored with rag.set_secret (members of "
            f"pgask_reader may use them): an admin grants that with SELECT "
            f"rag.grant_usage('{role}')",
            retryable=False) from None
    return _loaded.pop(name, None)


class KeyAccessError(EmbedderError):
    """The caller may not use stored keys (SQLSTATE 42501 where it reaches SQL)."""

    PREFIX = "privilege: "  # how sqlbridge.embed_with tells rag.embed to raise 42501
