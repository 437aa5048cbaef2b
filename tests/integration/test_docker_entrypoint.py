"""docker/entrypoint.sh and the healthchecks of docker/Dockerfile and docker/compose.yaml, run
outside a container (no Docker engine runs where pgask is tested): the very file the image
starts, as the test's own OS user, pointed at a data folder, a socket folder and a port of its
own. What only a container has (root dropping to postgres, the image's paths) is not run here;
docs/docker.md says so."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from commands import pgask_env
from fix_openai import free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

pytestmark = pytest.mark.slow


def dockerfile_healthcheck() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, as the exec form it is written in."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    (command,) = re.findall(r'^\s*CMD \[(.*)\]\s*$', text.split("HEALTHCHECK", 1)[1],
                            re.MULTILINE)[:1]
    return [part.strip().strip('"') for part in command.split(",")]


def worker_healthcheck() -> str:
    """The compose worker's healthcheck, as the shell would get it ($$ is compose's $)."""
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    kind, command = compose["services"]["worker"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return command.replace("$$", "$")


def app_home(tmp_path: Path) -> Path:
    """What /opt/pgask is to the entrypoint: here only `.venv/bin/pgask`, running this
    checkout's package with the test's own interpreter (a venv's scripts name the venv's
    absolute path, which a copied checkout, see scripts/test.sh, does not have)."""
    home = tmp_path / "app"
    bin_dir = home / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pgask").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pgask.cli "$@"\n')
    (bin_dir / "pgask").chmod(0o755)
    return home


@pytest.fixture
def server(tmp_path):
    """The entrypoint's default command (`postgres`) on a first start: initdb, pgask install,
    then the server in the foreground; stopped with SIGTERM, as `docker stop` does."""
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    env = {**pgask_env(), "PGDATA": str(tmp_path / "data"), "PGPORT": str(free_port()),
           "PGASK_HOME": str(app_home(tmp_path)), "PGASK_SOCKET_DIR": str(sockets),
           "POSTGRES_PASSWORD": "s3cret"}
    log = open(tmp_path / "entrypoint.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(["bash", str(ENTRYPOINT)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        yield env, process, tmp_path / "entrypoint.log"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def wait_healthy(env: dict, process: subprocess.Popen, log: Path) -> None:
    """Runs the Dockerfile's healthcheck until it passes, as Docker does every 5 s."""
    check = dockerfile_healthcheck()
    for _ in range(300):
        assert process.poll() is None, log.read_text()
        if subprocess.run(check, env=env, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"never healthy:\n{log.read_text()}")


def test_first_start_installs_pgask_behind_a_password_and_a_restart_keeps_it(server):
    env, process, log = server
    wait_healthy(env, process, log)
    url = f"postgresql://postgres:s3cret@127.0.0.1:{env['PGPORT']}/pgask"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM rag.pipelines WHERE name = 'documents'"
                            ).fetchone() == (1,)
        conn.execute("INSERT INTO rag.documents (source, title, content) VALUES"
                     " ('a.md', 'Disk', 'Delete old WAL archives when the disk is full.')")
        conn.commit()
        (answer,) = conn.execute("SELECT rag_answer('What to do when the disk is full?')"
                                 ).fetchone()
        assert "[1]" in answer and "a.md" in answer
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace("s3cret", "wrong")).close()

    # A restart (docker restart) finds the cluster: no second initdb, the data is there.
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    again = subprocess.Popen(["bash", str(ENTRYPOINT)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_healthy(env, again, log)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM rag.documents").fetchone() == (1,)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=60)


def test_a_worker_is_healthy_while_it_holds_its_connection(server):
    env, process, log = server
    wait_healthy(env, process, log)
    url = f"postgresql://postgres:s3cret@127.0.0.1:{env['PGPORT']}/pgask"
    worker_env = {**env, "DATABASE_URL": url,
                  "PATH": f"{env['PGASK_HOME']}/.venv/bin:{env['PATH']}"}  # the image's PATH
    healthcheck = ["sh", "-c", worker_healthcheck()]
    assert subprocess.run(healthcheck, env=worker_env).returncode != 0  # no worker yet
    worker = subprocess.Popen(["bash", str(ENTRYPOINT), "pgask", "worker"], env=worker_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            assert worker.poll() is None, "the worker exited"
            if subprocess.run(healthcheck, env=worker_env).returncode == 0:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"worker never healthy: {shlex.join(healthcheck)}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert subprocess.run(healthcheck, env=worker_env).returncode != 0  # gone: unhealthy
