"""A reranking server for the tests, run as its own process on 127.0.0.1.

It speaks both common /rerank shapes: Cohere's (also Jina's and vLLM's) at /v1/rerank and
text-embeddings-inference's at /rerank. Its relevance score is deterministic and easy to
predict: how many times the document contains the word "boost". POST /_fail {"status": 500}
makes every rerank call fail until POST /_fail {"status": null}; GET /_log counts calls.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RerankHandler(BaseHTTPRequestHandler):
    fail_status: int | None = None
    drip: float | None = None  # seconds between the bytes of every answer (a slow server)
    calls: list[dict] = []
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        with self.lock:
            self._send(200, {"calls": list(self.calls)})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/_fail":
            with self.lock:
                RerankHandler.fail_status = body.get("status")
                RerankHandler.drip = body.get("drip")
                RerankHandler.calls = []
            return self._send(200, {"ok": True})
        with self.lock:
            self.calls.append({"path": self.path, "body": body,
                               "authorization": self.headers.get("Authorization")})
            failing = self.fail_status
            drip = self.drip
        if drip:
            # One byte every `drip` seconds, status line included: each read gets a byte in
            # time, so only a total deadline ends the wait.
            data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        if failing:
            return self._send(failing, {"error": "injected failure"})
        if self.path == "/v1/rerank":
            docs = body["documents"]
            results = [{"index": i, "relevance_score": float(d.lower().count("boost"))}
                       for i, d in enumerate(docs)]
            results.sort(key=lambda r: -r["relevance_score"])
            return self._send(200, {"results": results[: body.get("top_n", len(docs))]})
        if self.path == "/rerank":
            rows = [{"index": i, "score": float(t.lower().count("boost"))}
                    for i, t in enumerate(body["texts"])]
            return self._send(200, sorted(rows, key=lambda r: -r["score"]))
        return self._send(404, {"error": f"no route {self.path}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), RerankHandler)
    print("ready", flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
