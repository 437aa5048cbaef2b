"""scripts/import_graph.py: the rooms of pgask import each other without a circle, only the
command-line side imports psycopg, and the script does fail on a circle."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "import_graph.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_the_package_has_no_circle_and_keeps_psycopg_at_the_edge():
    result = run()
    assert result.returncode == 0, result.stderr
    edges = dict(line.split(" -> ") for line in result.stdout.splitlines())
    assert edges["pgask.text"] == "(nothing)"  # chunking, loaders and answering share it
    assert "pgask.text" in edges["pgask.chunking"].split(", ")
    assert "pgask.chunking" not in edges["pgask.loaders"].split(", ")


def test_a_circle_and_a_stray_psycopg_import_are_reported(tmp_path):
    package = tmp_path / "pgask"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("def f():\n    from pgask import b\n")
    (package / "b.py").write_text("import psycopg\nfrom pgask.a import f\n")
    result = run("--src", str(tmp_path))
    assert result.returncode == 1
    assert "circle: pgask.a -> pgask.b -> pgask.a" in result.stderr
    assert "pgask.b imports psycopg (pgask.b)" in result.stderr


def test_mermaid_output_names_every_room():
    result = run("--mermaid")
    assert result.stdout.startswith("```mermaid\ngraph LR\n")
    assert "pgask_chunking --> pgask_text" in result.stdout
