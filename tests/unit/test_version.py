"""pgask._version reads pyproject.toml with a line scan (tomllib costs every new connection
~30 ms): it must agree with tomllib on the project's own file and on the shapes around it."""

import tomllib
from pathlib import Path

import pytest

from pgask import __version__
from pgask._version import _project_version

PYPROJECT = Path(__file__).resolve().parents[2] / "python" / "pyproject.toml"


def test_the_scan_reads_what_tomllib_reads_from_the_projects_file():
    text = PYPROJECT.read_text(encoding="utf-8")
    assert _project_version(text) == tomllib.loads(text)["project"]["version"] == __version__


@pytest.mark.parametrize("text, expected", [
    ('[project]\nversion = "1.2.3"\nname = "pgask"\n', "1.2.3"),  # version before name
    ('[tool.x]\nversion = "9"\n[project]\nname = "pgask"\nversion = "1.0"\n', "1.0"),
    ('[project]\nname = "pgask"\nversion = "1.0"\n[tool.x]\nversion = "9"\n', "1.0"),
    ('[project]\nname = "other"\nversion = "1.0"\n', None),  # another project's file
    ('[project]\nname = "pgask"\n', None),  # no version: the dist-info is read instead
    ('[project]\n  name   =   "pgask"  \n version="2.0"\n', "2.0"),
])
def test_the_scan_agrees_with_tomllib(text, expected):
    project = tomllib.loads(text)["project"]
    assert _project_version(text) == expected
    assert expected == (project.get("version") if project.get("name") == "pgask" else None)
