"""The release number, read from python/pyproject.toml: the one place it is written.

A checkout (the CLI from an editable install, the tests' PGASK_PYTHONPATH) has pyproject.toml
two folders above the package; an installed copy (`pip install --target` into the PL/Python
site directory, a wheel) has its pgask-X.Y.Z.dist-info next to the package. The sibling
dist-info is read before importlib.metadata because sys.path may hold another pgask's metadata
(an older site directory, a stale editable install) ahead of this copy's.

Every new database connection that runs pgask imports this, so it reads the one line it needs
with os.path and a line scan instead of tomllib and pathlib (about 30 ms of a connection's
first search here); tests/unit/test_version.py checks the scan against tomllib.
"""

from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.realpath(__file__))


def _project_version(text: str) -> str | None:
    """`version` of the [project] table of a pyproject.toml whose name is pgask, else None.
    pgask's own file writes both as `key = "value"` on one line (TOML's basic strings)."""
    table, values = None, {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            table = line
        elif table == "[project]" and "=" in line:
            key, _, value = (part.strip() for part in line.partition("="))
            if key in ("name", "version") and len(value) > 1 and value[0] == value[-1] == '"':
                values[key] = value[1:-1]
    return values.get("version") if values.get("name") == "pgask" else None


def read_version() -> str:
    pyproject = os.path.join(os.path.dirname(os.path.dirname(_PACKAGE)), "pyproject.toml")
    if os.path.isfile(pyproject):
        with open(pyproject, encoding="utf-8") as f:
            version = _project_version(f.read())
        if version:
            return version
    site = os.path.dirname(_PACKAGE)
    for entry in sorted(os.listdir(site)):
        if entry.startswith("pgask-") and entry.endswith(".dist-info"):
            with open(os.path.join(site, entry, "METADATA"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version: "):
                        return line.removeprefix("Version: ").strip()
    from importlib.metadata import version

    return version("pgask")
