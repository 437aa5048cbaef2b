"""A real Citus cluster on loopback for the tests marked `citus`: a coordinator and two
workers, each its own throwaway PostgreSQL 15 cluster (initdb, pg_ctl) with
shared_preload_libraries = 'citus', and pgask installed on the coordinator.

Nothing is built here: the fixture skips, saying why, when the server has no citus extension
(`make setup` builds Citus 12.1 when ../shared/vendor/citus-12.1.12-src.tar.gz is present).
The nodes inherit this process's environment, so their PL/Python imports this checkout
(PGASK_PYTHONPATH, set by fix_db).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from fix_openai import free_port

from fix_db import install_pgask

BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "127.0.0.1"
USER = "postgres"
DBNAME = "pgask_citus"
NOT_INSTALLED = ("Citus not installed: make setup builds it when "
                 "../shared/vendor/citus-12.1.12-src.tar.gz is present")
# Extensions the shards' queries use, created on every node before Citus connects them.
NODE_EXTENSIONS = ("citus", "vector", "plpython3u")


@dataclass
class Node:
    name: str
    datadir: Path
    port: int

    def url(self, dbname: str = DBNAME) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{dbname}"

    def connect(self, dbname: str = DBNAME) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True)


@dataclass
class CitusCluster:
    coordinator: Node
    workers: list[Node] = field(default_factory=list)

    def connect(self) -> psycopg.Connection:
        return self.coordinator.connect()


def citus_available(postgresql_proc) -> bool:
    url = f"postgresql://{postgresql_proc.user}@{postgresql_proc.host}:{postgresql_proc.port}"
    with psycopg.connect(f"{url}/postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'citus'"
                            ).fetchone() is not None


def _start(work: Path, name: str) -> Node:
    node = Node(name, work / name, free_port())
    subprocess.run([BIN / "initdb", "-D", str(node.datadir), "-U", USER, "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=300)
    options = (f"-p {node.port} -c listen_addresses={HOST} -c unix_socket_directories={work}"
               " -c shared_preload_libraries=citus -c fsync=off -c shared_buffers=32MB"
               # Citus commits a write that spans nodes with two-phase commit.
               " -c max_prepared_transactions=50")
    subprocess.run([BIN / "pg_ctl", "-D", str(node.datadir), "-o", options,
                    "-l", str(work / f"{name}.log"), "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    with node.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {DBNAME}")
    with node.connect() as conn:
        for extension in NODE_EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    return node


def _stop(node: Node) -> None:
    subprocess.run([BIN / "pg_ctl", "-D", str(node.datadir), "-m", "immediate", "-w", "stop"],
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def citus_cluster(postgresql_proc) -> CitusCluster:
    if not citus_available(postgresql_proc):
        pytest.skip(NOT_INSTALLED)
    work = Path(tempfile.mkdtemp(prefix="pgask-citus-"))
    nodes: list[Node] = []
    try:
        for name in ("coordinator", "worker1", "worker2"):
            nodes.append(_start(work, name))
        cluster = CitusCluster(nodes[0], nodes[1:])
        with cluster.connect() as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, nodes[0].port))
            for worker in cluster.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (HOST, worker.port))
        install_pgask(host=HOST, port=nodes[0].port, user=USER, dbname=DBNAME)
        yield cluster
    finally:
        for node in nodes:
            _stop(node)
        shutil.rmtree(work, ignore_errors=True)
