"""A PostgreSQL cluster of a test's own, for what the shared fixture cannot give.

The shared server (fix_db) is one per session with fixed settings and environment. A test that
needs `shared_preload_libraries` (pg_cron) or a different server environment (the upgrade test
runs 0.1.0's Python package, then today's) starts its own here, in its tmp_path, on a free port.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fix_openai import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    """initdb'd once; start() and stop() as often as a test needs, with its own environment."""

    def __init__(self, directory: Path, settings: dict[str, str] | None = None):
        self.datadir = directory / "data"
        self.port = free_port()
        self.settings = {"fsync": "off", "shared_buffers": "64MB", **(settings or {})}
        subprocess.run([BIN / "initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C"], check=True, capture_output=True)
        self.log = directory / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, env: dict[str, str] | None = None) -> None:
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        options += f" -p {self.port} -k {self.datadir} -h 127.0.0.1"
        subprocess.run([BIN / "pg_ctl", "-D", self.datadir, "-l", self.log, "-w", "-o", options,
                        "start"], check=True, capture_output=True, env=env or dict(os.environ))

    def stop(self) -> None:
        subprocess.run([BIN / "pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
