"""Chat servers for the LLM tests: `chat_server`, the fault-injecting loopback server of
fix_openai (it answers /v1/chat/completions too), and `llm_server`, a real `pgask serve-llm`
(llama.cpp with SmolLM2-135M) started once per session, skipped with the reason when
python/requirements/llm.txt is not installed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import pgask_env
from fix_openai import EmbeddingServer, first_line

READY_TIMEOUT_SECONDS = 120


@pytest.fixture
def chat_server(embedding_server) -> EmbeddingServer:
    return embedding_server


@dataclass
class LLMServer:
    url: str
    model: str


def skip_unless_llm_runtime() -> None:
    from pgask.llm.serve import ServeError, bundled_model_path

    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (python/requirements/llm.txt; `make setup` "
                    "installs it)")
    try:
        bundled_model_path()
    except ServeError as exc:
        pytest.skip(str(exc))


def start_serve_llm(*args: str, stderr_path: Path) -> tuple[subprocess.Popen, str]:
    """`pgask serve-llm` on any free port, once it listens, and the line it printed."""
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pgask.cli", "serve-llm", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=pgask_env())
    line = first_line(process, READY_TIMEOUT_SECONDS)
    if not line.startswith("serving "):
        process.kill()
        process.wait()
        raise RuntimeError(f"pgask serve-llm did not start: {line!r}\n"
                           f"{stderr_path.read_text()[-2000:]}")
    return process, line


def stop(process: subprocess.Popen) -> int:
    """Stops a server as a service manager would (SIGTERM), killing it if it hangs."""
    process.terminate()
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory) -> LLMServer:
    skip_unless_llm_runtime()
    stderr_path = tmp_path_factory.mktemp("serve-llm") / "stderr.txt"
    # One thread: llama.cpp spin-waits, and with more threads than idle cores (CI shares two
    # with PostgreSQL and pytest) a request slowed from seconds to minutes here.
    process, line = start_serve_llm("--ctx-size", "2048", "--threads", "1",
                                    stderr_path=stderr_path)
    try:
        match = re.match(r"serving (\S+) at (\S+)", line)
        yield LLMServer(url=match.group(2), model=match.group(1))
    finally:
        stop(process)
