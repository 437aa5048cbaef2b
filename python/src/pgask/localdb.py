"""A project-local PostgreSQL cluster that the user does not have to manage.

`pgask db start` creates it on first use (data under `.pgask/` in the checkout), listens on
127.0.0.1 on its own port, and trusts loopback connections: it is a development database, not
a production one. As root, the server runs as the `postgres` user because initdb refuses root.
Every command honours DATABASE_URL, which targets an existing server instead.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PGASK_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_PORT = 54329
DATABASE = "pgask"
SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"


class LocalDbError(Exception):
    """The local cluster could not be started or reached; the message says why."""


def _compile_checkout() -> None:
    """Writes the bytecode of the checkout's pgask that the development server imports
    (PGASK_PYTHONPATH, below). The server's OS user cannot write __pycache__ into a checkout it
    does not own, so without this every new connection compiled pgask from source: ~100 ms of
    its first search here, which an installed site directory (compiled by pip) never pays.
    Up-to-date files are skipped; a checkout nobody may write to is left as it is."""
    import compileall

    compileall.compile_dir(str(_checkout_root() / "python" / "src" / "pgask"), quiet=2)


def _checkout_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _as_root() -> bool:
    return os.geteuid() == 0


def _reachable_by(user: str, path: Path) -> bool:
    """Whether `user` can reach `path` (or its nearest existing parent): enter a folder, read
    a file."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    flag = "-x" if probe.is_dir() else "-r"
    result = subprocess.run(["runuser", "-u", user, "--", "test", flag, str(probe)],
                            capture_output=True)
    return result.returncode == 0


@dataclass(frozen=True)
class LocalCluster:
    home: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / args[0]), *args[1:]]
        # The development server runs the checkout's pgask, not the copy `make setup` put in
        # the site directory, so edits take effect on the next connection.
        source = _checkout_root() / "python" / "src"
        if _as_root():
            if _reachable_by(SERVER_OS_USER, source / "pgask" / "__init__.py"):
                command = ["env", f"PGASK_PYTHONPATH={source}", *command]
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
        else:
            command = ["env", f"PGASK_PYTHONPATH={source}", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise LocalDbError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
                               f"\n(server log: {self.log_file})")
        return result

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def _init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if _as_root():
            shutil.chown(self.home, SERVER_OS_USER)
            shutil.chown(self.socket_dir, SERVER_OS_USER)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--no-locale", "--no-instructions")
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# pgask local development cluster\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "shared_buffers = 256MB\n"
                "maintenance_work_mem = 256MB\n"
            )

    def start(self) -> bool:
        """Starts the cluster (creating it first if needed); False if it was already running."""
        ensure_server_user()
        _compile_checkout()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        if self.is_running():
            return False
        if _port_in_use(self.port):
            raise LocalDbError(
                f"port {self.port} on 127.0.0.1 is taken by another program (another checkout's "
                "pgask cluster?): set PGASK_PORT to a free port")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                  "-t", "60", "start")
        self._create_database()
        return True

    def _create_database(self) -> None:
        import psycopg

        admin_url = self.url.rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                          (DATABASE,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> bool:
        """Stops the cluster; False if it was not running."""
        if not self.is_running():
            return False
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        return True

    def status(self) -> str:
        if not (self.data_dir / "PG_VERSION").exists():
            return f"not created (would live in {self.home})"
        state = "running" if self.is_running() else "stopped"
        return f"{state}: {self.url} (data: {self.data_dir})"


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def local_cluster() -> LocalCluster:
    """The cluster for this checkout: PGASK_HOME and PGASK_PORT override the defaults."""
    port = int(os.environ.get("PGASK_PORT", DEFAULT_PORT))
    if "PGASK_HOME" in os.environ:
        return LocalCluster(Path(os.environ["PGASK_HOME"]).resolve(), port)
    home = _checkout_root() / ".pgask"
    if _as_root() and not _reachable_by(SERVER_OS_USER, home):
        # A checkout under /root cannot be entered by the server's user: keep the data in a
        # system folder named after the checkout instead.
        digest = hashlib.sha256(str(_checkout_root()).encode()).hexdigest()[:10]
        home = Path("/var/lib/pgask") / f"cluster-{digest}"
    return LocalCluster(home, port)


def database_url() -> str:
    """DATABASE_URL if set, else the local cluster's URL."""
    return os.environ.get("DATABASE_URL") or local_cluster().url


def ensure_server_user() -> None:
    if _as_root():
        try:
            pwd.getpwnam(SERVER_OS_USER)
        except KeyError as exc:
            raise LocalDbError(f"no '{SERVER_OS_USER}' OS user to run the server as: "
                               "install postgresql-15 (`make setup`)") from exc
