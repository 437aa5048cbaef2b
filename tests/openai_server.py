"""An OpenAI-compatible embeddings and chat server for the tests, run as its own process.

It is pgask's `serve-embeddings` server (the real local model over real HTTP) plus a
deterministic /v1/chat/completions (it echoes the last user message, so tests can check what
was sent) and two test controls: POST /_faults schedules failures for the next embedding or
chat requests (an HTTP status with or without Retry-After, a delay, a reset mid-response, a
malformed body, vectors of the wrong dimension, fewer vectors than inputs), and GET /_log
lists every input it embedded and every chat request it got, so tests can tell how often a
text was paid for.
"""

import argparse
import json
import socket
import sys
import threading
import time

from pgask.embedding_server import EmbeddingHandler, make_server


class FaultyHandler(EmbeddingHandler):
    faults: list[dict] = []
    inputs: list[str] = []
    chats: list[dict] = []
    requests = 0
    state_lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        if self.path == "/_log":
            with self.state_lock:
                return self._send_json(200, {"inputs": list(self.inputs),
                                             "chats": list(self.chats),
                                             "requests": FaultyHandler.requests})
        return super().do_GET()

    def do_POST(self):  # noqa: N802
        if self.path == "/_faults":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with self.state_lock:
                FaultyHandler.faults = list(body.get("faults", []))
                if body.get("reset_log"):
                    FaultyHandler.inputs = []
                    FaultyHandler.chats = []
                    FaultyHandler.requests = 0
            return self._send_json(200, {"ok": True})
        # Azure OpenAI puts the deployment in the path: /openai/deployments/NAME/chat/...
        if self.path.split("?")[0].endswith("/chat/completions"):
            return self.respond_chat()
        return super().do_POST()

    def _next_fault(self, inputs: list[str] | None = None, chat: bool = False) -> dict | None:
        with self.state_lock:
            FaultyHandler.requests += 1
            if not self.faults:
                return None
            fault = self.faults[0]
            if "match" in fault and not any(fault["match"] in text for text in inputs or []):
                return None  # a fault for some inputs only: this request is not one
            if fault.get("endpoint", "chat" if chat else "embeddings") != (
                    "chat" if chat else "embeddings"):
                return None  # a fault for the other endpoint ("endpoint": "embeddings"/"chat")
            fault["times"] = fault.get("times", 1) - 1
            if fault["times"] <= 0:
                self.faults.pop(0)
            return fault

    def _apply_fault(self, inputs: list[str] | None = None, chat: bool = False) -> bool | dict:
        """Applies the next scheduled fault; True when it answered the request itself, the
        fault when it changes the answer (dimensions, drop), else False."""
        fault = self._next_fault(inputs, chat)
        if fault and fault.get("delay"):
            time.sleep(fault["delay"])
        if fault and fault.get("drip"):
            # A 200 that arrives one byte every `drip` seconds, status line included: every
            # read gets a byte in time, so only a total deadline ends the wait.
            body = b'{"object": "list", "data": []}'
            data = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(fault["drip"])
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return True
        if fault and fault.get("redirect"):
            self.send_response(307)
            self.send_header("Location", fault["redirect"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if fault and fault.get("reset"):
            # Headers and half a body, then the connection closes: a reset mid-response.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n{\"data\": [{\"embedding\": [0.1,")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault and "body" in fault:
            data = fault["body"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        if fault and ("dimensions" in fault or "drop" in fault or "reply" in fault):
            return fault
        if fault and fault.get("status"):
            headers = {}
            if "retry_after" in fault:
                headers["Retry-After"] = str(fault["retry_after"])
            body = {"error": {"message": fault.get("message", "injected failure"),
                              "type": "server_error"}}
            self._send_json(fault["status"], body, headers)
            return True
        return False

    def respond_embeddings(self, request, inputs):
        fault = self._apply_fault(inputs)
        if fault is True:
            return
        with self.state_lock:
            FaultyHandler.inputs.extend(inputs)
        if fault:
            return self._respond_wrong(inputs, fault)
        return super().respond_embeddings(request, inputs)

    def _respond_wrong(self, inputs, fault):
        """A well-formed answer with the wrong content: vectors of another dimension, or
        fewer vectors than inputs."""
        from pgask.embedders.local import get_local_embedder

        with self.model_lock:
            vectors = get_local_embedder().embed(inputs)
        if "dimensions" in fault:
            vectors = vectors[:, :fault["dimensions"]]
        if "drop" in fault:
            vectors = vectors[:max(0, len(vectors) - fault["drop"])]
        self._send_json(200, {"object": "list", "model": "m", "data": [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)]})

    def respond_chat(self):
        """Answers "You said: <last user message>", cut to max_tokens words; tokens are words.
        A message "REPLY: <text>" is answered with exactly <text>: a fixed model output, as is
        any request a fault {"reply": <text>} is scheduled for ("match": a text of its last
        user message picks the request, e.g. the judge's after the answer's)."""
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.state_lock:
            FaultyHandler.chats.append({"path": self.path, "body": request})
        messages = request.get("messages") or []
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        fault = self._apply_fault([last_user], chat=True)
        if fault is True:
            return
        words = f"You said: {last_user}".split()
        limit = request.get("max_tokens") or len(words)
        fixed = last_user.removeprefix("REPLY: ") if last_user.startswith("REPLY: ") else None
        if fault and "reply" in fault:
            fixed = fault["reply"]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        self._send_json(200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "echo"),
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": fixed if fixed is not None
                                                 else " ".join(words[:limit])},
                         "finish_reason": "length" if len(words) > limit else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": min(limit, len(words)),
                      "total_tokens": prompt_tokens + min(limit, len(words))},
        })


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
