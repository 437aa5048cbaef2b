"""A real OpenAI-compatible embeddings and chat server on 127.0.0.1 (tests/openai_server.py),
started once per session; each test gets it with no faults scheduled and an empty log."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
READY_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call_json(port: int, method: str, path: str, body: dict | None = None) -> dict:
    """A JSON request to a test server's control endpoints on 127.0.0.1."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def first_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line a server prints on stdout (it says it is ready), or "" when it exits or
    says nothing for ``timeout`` seconds: a server that hangs at start must not hang the
    suite, as a bare readline() would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            return process.stdout.readline()
        if process.poll() is not None:
            return ""
    return ""


@contextmanager
def server_process(script: str, what: str, port: int | None = None):
    """Runs tests/<script> --port PORT until the block ends; yields PORT once the server
    printed "ready". PORT is a free one unless given (a provider coming back on its port)."""
    port = port or free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "python" / "src"))
    process = subprocess.Popen([sys.executable, str(HERE / script), "--port", str(port)],
                               stdout=subprocess.PIPE, env=env, text=True)
    ready = first_line(process, READY_TIMEOUT_SECONDS).strip()
    if ready != "ready":
        process.kill()
        process.wait()
        raise RuntimeError(f"the {what} server did not start within "
                           f"{READY_TIMEOUT_SECONDS} s: {ready!r}")
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class EmbeddingServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        return call_json(self.port, method, path, body)

    def fail_next(self, *faults: dict) -> None:
        """Schedules faults: {"status": 500}, {"status": 429, "retry_after": 2},
        {"delay": 3}, {"reset": True}, {"body": "not json"}, {"dimensions": 3},
        {"drop": 1}, {"reply": "text"} (chat); "times": n repeats one; "match": "text"
        applies one only to a request whose inputs (or last chat message) hold the text;
        "endpoint": "embeddings" or "chat" only to requests of that endpoint."""
        self._call("POST", "/_faults", {"faults": list(faults)})

    def reset(self) -> None:
        self._call("POST", "/_faults", {"faults": [], "reset_log": True})

    def embedded_inputs(self) -> list[str]:
        return self._call("GET", "/_log")["inputs"]

    def requests(self) -> int:
        return self._call("GET", "/_log")["requests"]

    def chat_requests(self) -> list[dict]:
        """Every chat request received, faulted or not: {"path": ..., "body": {...}}."""
        return self._call("GET", "/_log")["chats"]


@pytest.fixture(scope="session")
def _embedding_server_process():
    with server_process("openai_server.py", "embeddings") as port:
        yield EmbeddingServer(port)


@pytest.fixture
def embedding_server(_embedding_server_process) -> EmbeddingServer:
    _embedding_server_process.reset()
    yield _embedding_server_process
    _embedding_server_process.reset()


@pytest.fixture
def srv(db, embedding_server):
    """The test database with the loopback embedder registered as 'srv' and 'srv2' (a
    reembed needs a second name): fast, so the tests that use it are about pgask's own work."""
    for name in ("srv", "srv2"):
        db.execute("SELECT rag.create_embedder(%s, 'openai', 'all-MiniLM-L6-v2-int8', 384, %s)",
                   (name, embedding_server.url))
    return db
