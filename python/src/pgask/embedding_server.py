"""`pgask serve-embeddings`: the local model behind the OpenAI embeddings API, on loopback.

The model on another machine, or a real OpenAI-compatible endpoint for testing the `openai`
provider without the internet. (On the database server, backends already share one model
process without it: pgask.embedders.shared_process.)
Register it with rag.create_embedder('shared', 'openai', 'all-MiniLM-L6-v2-int8', 384,
'http://127.0.0.1:PORT/v1').
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pgask.embedders.local import MODEL_NAME, count_tokens, get_local_embedder

MAX_INPUTS = 2048


class EmbeddingHandler(BaseHTTPRequestHandler):
    server_version = "pgask-embeddings"
    # Set by serve(): the key clients must send as "Authorization: Bearer KEY", or None.
    api_key: str | None = None
    model_lock = threading.Lock()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def _send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind}})

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": MODEL_NAME, "object": "model", "owned_by": "pgask"}]})
        else:
            self._error(404, f"no route for GET {self.path}")

    def do_POST(self):  # noqa: N802
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            return self._error(404, f"no route for POST {self.path}")
        if self.api_key and self.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "invalid API key", "authentication_error")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            return self._error(400, "the body must be JSON")
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (not isinstance(inputs, list) or not inputs or len(inputs) > MAX_INPUTS
                or not all(isinstance(i, str) for i in inputs)):
            return self._error(400, f"input must be a string or a list of 1-{MAX_INPUTS} strings")
        self.respond_embeddings(request, inputs)

    def respond_embeddings(self, request: dict, inputs: list[str]) -> None:
        with self.model_lock:  # one ONNX session; it uses every core on its own
            vectors = get_local_embedder().embed(inputs)
        as_base64 = request.get("encoding_format") == "base64"
        data = [{
            "object": "embedding", "index": i,
            "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode() if as_base64
                          else v.tolist()),
        } for i, v in enumerate(vectors)]
        tokens = sum(count_tokens(text) for text in inputs)
        self._send_json(200, {"object": "list", "data": data, "model": MODEL_NAME,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def make_server(host: str, port: int, api_key: str | None = None,
                handler: type[EmbeddingHandler] = EmbeddingHandler) -> ThreadingHTTPServer:
    handler.api_key = api_key
    get_local_embedder()  # load before the first request, not during it
    return ThreadingHTTPServer((host, port), handler)
