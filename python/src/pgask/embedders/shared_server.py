"""The shared model process's server side (pgask.embedders.shared_process has the protocol,
the paths and the entry point): it loads the model once and answers backends over the Unix
socket. Kept apart so that a backend, which imports shared_process at its first PL/Python call,
does not import socketserver and threading too (issue 31: a first search's imports)."""

from __future__ import annotations

import fcntl
import os
import socketserver
import threading
import time

from pgask import __version__
from pgask.embedders.shared_process import (
    DIR_NAME,
    IDLE_SECONDS,
    LOCK_NAME,
    PROTOCOL,
    WATCH_SECONDS,
    ProtocolError,
    _log,
    check_directory,
    check_socket_directory,
    read_message,
    socket_path,
    write_message,
)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        service = self.server.service
        sock = self.request
        while True:
            try:
                request, _ = read_message(sock)
            except (ProtocolError, OSError, ValueError):
                return
            try:
                header, payload = service.answer(request)
            except Exception as exc:  # noqa: BLE001 - reported to the client, which falls back
                header, payload = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, b""
            try:
                write_message(sock, header, payload)
            except OSError:
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Service:
    def __init__(self) -> None:
        from pgask.embedders.local import LocalEmbedder

        class Shared(LocalEmbedder):
            """One session; the forward passes take turns, the rest runs in parallel."""

            model_lock = threading.Lock()

            def _hidden(self, batch_ids):
                with self.model_lock:
                    return super()._hidden(batch_ids)

        # onnxruntime's own session options, as in a backend. Turning its pool's spinning off
        # (tried to spare the backends' cores) made ingest through this process 0.85-0.93x
        # the in-backend rate at low load, against 1.04x with it on; with two busy loops
        # beside it, on still gave 1.0x ingest and 1.2x search (pgask bench --only memory).
        self.model = Shared()
        self.started = time.time()
        self.requests = 0
        self.texts = 0
        self.last_used = time.monotonic()

    def answer(self, request: dict) -> tuple[dict, bytes]:
        self.last_used = time.monotonic()
        op = request.get("op")
        if op == "status":
            return {"ok": True, "protocol": PROTOCOL, "version": __version__,
                    "pid": os.getpid(),
                    "model": self.model.name, "started": self.started,
                    "requests": self.requests, "texts": self.texts}, b""
        if op != "embed":
            return {"ok": False, "error": f"unknown op {op!r}"}, b""
        texts = request["texts"]
        spans = request.get("spans") or [[] for _ in texts]
        if (not isinstance(texts, list) or not all(isinstance(t, str) for t in texts)
                or len(spans) != len(texts)):
            return {"ok": False, "error": "texts must be a list of strings"}, b""
        spans = [[(int(lo), int(hi)) for lo, hi in s] for s in spans]
        out, pooled = self.model.embed_with_spans(texts, spans)
        self.requests += 1
        self.texts += len(texts)
        self.last_used = time.monotonic()
        payload = out.astype("<f4").tobytes() + b"".join(
            p.astype("<f4").tobytes() for p in pooled)
        return {"ok": True, "rows": len(texts), "span_rows": [len(p) for p in pooled]}, payload


def _watch(service: Service, postmaster: int, sock_path: str, inode: int) -> None:
    """Ends the process when its postmaster is gone, its socket file is not its own, or it
    has been idle for IDLE_SECONDS."""
    while True:
        time.sleep(WATCH_SECONDS)
        reason = None
        try:
            os.kill(postmaster, 0)
        except ProcessLookupError:
            reason = f"postmaster {postmaster} is gone"
        except PermissionError:
            reason = f"pid {postmaster} is no longer the postmaster"
        try:
            if os.lstat(sock_path).st_ino != inode:
                reason = "the socket file was replaced"
        except FileNotFoundError:
            reason = "the socket file was removed"
        if not reason and time.monotonic() - service.last_used > IDLE_SECONDS:
            reason = f"idle for {IDLE_SECONDS:g} s"
            os.unlink(sock_path)  # new callers start a new one rather than reach this one
        if reason:
            _log(f"exiting: {reason}")
            if "postmaster" in reason:
                _unlink_own(sock_path, inode)  # no stale socket file in a stopped server
            os._exit(0)


def _unlink_own(path: str, inode: int) -> None:
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def serve(postmaster: int, ready_fd: int | None = None) -> int:
    """Serves from the current directory (the data directory) until told to stop; writes
    b"ready" (or b"other": another process serves) to `ready_fd` once clients can connect."""

    def tell(word: bytes) -> None:
        if ready_fd is not None:
            try:
                os.write(ready_fd, word)
            except OSError:
                pass  # the launcher gave up waiting (a slow start): serve all the same
            os.close(ready_fd)

    directory = DIR_NAME
    problem = check_directory(directory) or check_socket_directory(directory)
    if problem:
        _log(f"not starting: {problem}")
        return 1
    lock = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        tell(b"other")  # another one serves (or is starting): nothing to do
        return 0
    began = time.perf_counter()
    service = Service()
    sock_path = socket_path(directory)
    try:
        os.unlink(sock_path)  # a stale one, left by a process that died
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o177)
    try:
        server = _Server(sock_path, _Handler)
    finally:
        os.umask(old_umask)
    os.chmod(sock_path, 0o600)
    server.service = service
    inode = os.lstat(sock_path).st_ino
    threading.Thread(target=_watch, args=(service, postmaster, sock_path, inode),
                     daemon=True).start()
    _log(f"started: model {service.model.name} loaded in "
         f"{time.perf_counter() - began:.2f} s, serving {os.path.abspath(sock_path)}")
    tell(b"ready")
    server.serve_forever()
    return 0
