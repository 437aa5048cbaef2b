"""An OpenAI-compatible embeddings server for the tests, run as its own process.

It is pgask's `serve-embeddings` server (the real local model over real HTTP) plus two test
controls: POST /_faults schedules failures for the next embedding requests, and GET /_log
lists every input it embedded, so tests can tell how often a text was paid for.
"""

import argparse
import json
import sys
import threading
import time

from pgask.embedding_server import EmbeddingHandler, make_server


class FaultyHandler(EmbeddingHandler):
    faults: list[dict] = []
    inputs: list[str] = []
    requests = 0
    state_lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        if self.path == "/_log":
            with self.state_lock:
                return self._send_json(200, {"inputs": list(self.inputs),
                                             "requests": FaultyHandler.requests})
        return super().do_GET()

    def do_POST(self):  # noqa: N802
        if self.path == "/_faults":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with self.state_lock:
                FaultyHandler.faults = list(body.get("faults", []))
                if body.get("reset_log"):
                    FaultyHandler.inputs = []
                    FaultyHandler.requests = 0
            return self._send_json(200, {"ok": True})
        return super().do_POST()

    def _next_fault(self) -> dict | None:
        with self.state_lock:
            FaultyHandler.requests += 1
            if not self.faults:
                return None
            fault = self.faults[0]
            fault["times"] = fault.get("times", 1) - 1
            if fault["times"] <= 0:
                self.faults.pop(0)
            return fault

    def respond_embeddings(self, request, inputs):
        fault = self._next_fault()
        if fault and fault.get("delay"):
            time.sleep(fault["delay"])
        if fault and fault.get("status"):
            headers = {}
            if "retry_after" in fault:
                headers["Retry-After"] = str(fault["retry_after"])
            body = {"error": {"message": fault.get("message", "injected failure"),
                              "type": "server_error"}}
            return self._send_json(fault["status"], body, headers)
        with self.state_lock:
            FaultyHandler.inputs.extend(inputs)
        return super().respond_embeddings(request, inputs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = make_server("127.0.0.1", args.port, handler=FaultyHandler)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
