"""A real hot standby of the test cluster, for the tests of reads on replicas.

`standby` takes a base backup of the pytest-postgresql cluster (pg_basebackup -R: it writes
primary_conninfo and standby.signal, so the copy starts as a streaming replica), starts it on
a port of its own and stops it after the module. The test cluster was made by initdb with
--auth=trust, whose pg_hba.conf already lets 127.0.0.1 connect for replication, and runs with
the default wal_level (replica). The standby inherits this process's environment, so its
PL/Python imports the same checkout (PGASK_PYTHONPATH, set by fix_db).
Skipped when PGASK_TEST_DSN points at an existing server: its files are not ours to copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fix_openai import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
REPLAY_TIMEOUT_SECONDS = 60


@dataclass
class Standby:
    host: str
    port: int
    user: str

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True)

    def wait_for(self, primary: psycopg.Connection) -> None:
        """Returns once the standby has replayed everything the primary wrote so far."""
        (target,) = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
        with self.connect("postgres") as conn:
            deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
            while True:
                (done,) = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the standby did not replay up to {target} within "
                                         f"{REPLAY_TIMEOUT_SECONDS} s")
                time.sleep(0.05)


# A hot standby refuses to start with a lower value than its primary's for these (the
# primary's tests turn on two-phase commit, for one).
_MATCHED_SETTINGS = ("max_connections", "max_prepared_transactions", "max_worker_processes",
                     "max_wal_senders", "max_locks_per_transaction")


def _settings_a_standby_must_match(proc) -> list[tuple[str, str]]:
    url = f"postgresql://{proc.user}@{proc.host}:{proc.port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT name, setting FROM pg_catalog.pg_settings"
                            " WHERE name = ANY(%s) ORDER BY name",
                            (list(_MATCHED_SETTINGS),)).fetchall()


@pytest.fixture(scope="module")
def standby(postgresql_proc) -> Standby:
    if os.environ.get("PGASK_TEST_DSN"):
        pytest.skip("PGASK_TEST_DSN is set: the standby test copies the cluster that "
                    "pytest-postgresql starts itself")
    work = Path(tempfile.mkdtemp(prefix="pgask-standby-"))
    datadir = work / "data"
    port = free_port()
    subprocess.run(
        [BIN / "pg_basebackup", "-h", postgresql_proc.host, "-p", str(postgresql_proc.port),
         "-U", postgresql_proc.user, "-D", str(datadir), "-R", "-X", "stream", "-c", "fast"],
        check=True, capture_output=True, timeout=300)
    options = (f"-p {port} -c listen_addresses={postgresql_proc.host}"
               f" -c unix_socket_directories={work} -c hot_standby=on"
               + "".join(f" -c {name}={value}"
                         for name, value in _settings_a_standby_must_match(postgresql_proc)))
    started = subprocess.run(
        [BIN / "pg_ctl", "-D", str(datadir), "-o", options, "-l", str(work / "log"), "-w",
         "start"], capture_output=True, timeout=120)
    if started.returncode != 0:
        log = (work / "log").read_text(errors="replace")[-2000:]
        shutil.rmtree(work, ignore_errors=True)
        raise AssertionError(f"the standby did not start:\n{log}")
    try:
        yield Standby(postgresql_proc.host, port, postgresql_proc.user)
    finally:
        subprocess.run([BIN / "pg_ctl", "-D", str(datadir), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
