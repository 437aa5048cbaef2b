"""A real reranking server on 127.0.0.1 (tests/rerank_server.py), started once per session."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from fix_openai import free_port

HERE = Path(__file__).resolve().parent


@dataclass
class RerankServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def fail_with(self, status: int | None) -> None:
        """Every rerank call answers `status` from now on (None: answer normally again);
        also clears the call log."""
        self._call("POST", "/_fail", {"status": status})

    def calls(self) -> list[dict]:
        return self._call("GET", "/_log")["calls"]


@pytest.fixture(scope="session")
def _rerank_server_process():
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "rerank_server.py"), "--port",
                                str(port)], stdout=subprocess.PIPE, text=True)
    ready = process.stdout.readline().strip()
    if ready != "ready":
        process.kill()
        raise RuntimeError(f"the rerank server did not start: {ready!r}")
    yield RerankServer(port)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def rerank_server(_rerank_server_process) -> RerankServer:
    _rerank_server_process.fail_with(None)
    return _rerank_server_process
