"""A real reranking server on 127.0.0.1 (tests/rerank_server.py), started once per session."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fix_openai import call_json, server_process


@dataclass
class RerankServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_with(self, status: int | None) -> None:
        """Every rerank call answers `status` from now on (None: answer normally again);
        also clears the call log."""
        call_json(self.port, "POST", "/_fail", {"status": status})

    def drip(self, seconds: float | None) -> None:
        """Every rerank call answers one byte every `seconds` (None: at once again); also
        clears the call log."""
        call_json(self.port, "POST", "/_fail", {"status": None, "drip": seconds})

    def calls(self) -> list[dict]:
        return call_json(self.port, "GET", "/_log")["calls"]


@pytest.fixture(scope="session")
def _rerank_server_process():
    with server_process("rerank_server.py", "rerank") as port:
        yield RerankServer(port)


@pytest.fixture
def rerank_server(_rerank_server_process) -> RerankServer:
    _rerank_server_process.fail_with(None)
    return _rerank_server_process
