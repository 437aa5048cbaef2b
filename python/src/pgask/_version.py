"""The release number, read from python/pyproject.toml: the one place it is written.

A checkout (the CLI from an editable install, the tests' PGASK_PYTHONPATH) has pyproject.toml
two folders above the package; an installed copy (`pip install --target` into the PL/Python
site directory, a wheel) has its pgask-X.Y.Z.dist-info next to the package. The sibling
dist-info is read before importlib.metadata because sys.path may hold another pgask's metadata
(an older site directory, a stale editable install) ahead of this copy's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def read_version() -> str:
    pyproject = _PACKAGE.parent.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "pgask" and project.get("version"):
            return project["version"]
    for dist_info in sorted(_PACKAGE.parent.glob("pgask-*.dist-info")):
        for line in (dist_info / "METADATA").read_text(encoding="utf-8").splitlines():
            if line.startswith("Version: "):
                return line.removeprefix("Version: ").strip()
    from importlib.metadata import version

    return version("pgask")
