"""The pgask command as a user runs it: a subprocess importing this checkout's package, with
DATABASE_URL only when a test gives one (never the environment's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pgask_env(database_url: str | None = None, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python" / "src"))
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(env_extra or {})
    return env


def pgask(*args: str, database_url: str | None = None, env_extra: dict | None = None,
          timeout: float = 300, cwd: str | os.PathLike | None = None
          ) -> subprocess.CompletedProcess:
    """Runs `pgask ARGS...` to the end (in folder `cwd`); its output is captured as text."""
    return subprocess.run([sys.executable, "-m", "pgask.cli", *args], capture_output=True,
                          text=True, env=pgask_env(database_url, env_extra), timeout=timeout,
                          cwd=cwd)


def pgask_process(*args: str, database_url: str | None = None) -> subprocess.Popen:
    """Starts `pgask ARGS...` (a worker, say) and returns at once; stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "pgask.cli", *args],
                            env=pgask_env(database_url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
