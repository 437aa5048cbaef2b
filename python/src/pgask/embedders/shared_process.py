"""The shared model process: one copy of the local model per PostgreSQL server.

A backend that needs the local model asks this process over a Unix socket instead of loading
its own copy (~160 MB of unique memory per backend, half a second on its first use). Nobody
starts it by hand: the first backend that finds no answer on the socket spawns it
(pgask.embedders.service), detached, as the server's own OS user, in the data directory.

Where: ``<data directory>/pg_stat_tmp/``, whose contents pg_basebackup and pg_rewind skip
(they cannot copy a socket file, and pg_rewind fails on one, live or stale): the socket
``pgask-embed-<version>.sock`` (0600) there, and in ``pgask_embedder/`` (0700, owned by the
server's OS user) ``service-<version>.lock`` (held for the process's
life: at most one serves), ``spawn-<version>.lock`` (backends take turns to start it) and
``service.log``. The names carry pgask's version: during an upgrade, backends still on the old
code and those on the new one each get the process of their own code, so each gets the
vectors its own model code computes. Only that OS
user (and root) can connect to the socket or plant a file there; a database role cannot.

What it computes: exactly what a backend would, so the vectors are the same bit for bit:
the same LocalEmbedder class, the same session options and the same texts per call, in the
same order (the client sends each call's texts as it got them; batching by length happens
inside LocalEmbedder.embed_with_spans, as in the backend). Concurrent calls share the
session; only the forward passes take turns (tokenising and pooling run in parallel).

It exits when the postmaster that started it is gone, when its socket file is removed or
replaced, or after IDLE_SECONDS without a call (an old version's process, after an upgrade;
the next call that needs it starts it again).

Protocol: each message is a 8-byte header (two big-endian uint32: JSON length, payload
length), the JSON, then the payload. Requests carry no payload:
``{"op": "embed", "texts": [...], "spans": [[[lo, hi], ...], ...] | null}`` answers
``{"ok": true, "rows": n, "span_rows": [k, ...]}`` with n x 384 float32 (little endian)
and then each text's span vectors; ``{"op": "status"}`` answers the process's figures.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time

from pgask import __version__

DIR_NAME = os.path.join("pg_stat_tmp", "pgask_embedder")
# The socket sits in pg_stat_tmp itself, not in DIR_NAME: a socket file left in a folder there
# (the server stopped or lost power) makes pg_rewind fail ("could not remove directory": it
# removes the folder's files but sees no socket), while one directly in pg_stat_tmp it
# neither copies nor removes.
SOCKET_NAME = f"pgask-embed-{__version__}.sock"
LOCK_NAME = f"service-{__version__}.lock"
SPAWN_LOCK_NAME = f"spawn-{__version__}.lock"
LOG_NAME = "service.log"
PROTOCOL = 1
HEADER = struct.Struct("!II")
MAX_JSON = 256 * 2**20
WATCH_SECONDS = 1.0
IDLE_SECONDS = 3600.0


_enabled: bool | None = None  # None: not configured (outside a backend): in-process
_disabled_reason = "not configured in this process"


def configure(setting: str | None) -> None:
    """Called once per backend by rag._python_init() with rag.settings' embedding_service
    value (None when the row is absent: on). Kept here, away from numpy and the model, so
    that a connection that never embeds imports neither."""
    global _enabled, _disabled_reason
    env = os.environ.get("PGASK_EMBEDDING_SERVICE", "").strip().lower()
    value = (setting or "on").strip().lower()
    if env in ("off", "0", "false", "no"):
        _enabled = False
        _disabled_reason = "PGASK_EMBEDDING_SERVICE=off in the server's environment"
    elif value in ("off", "0", "false", "no"):
        _enabled, _disabled_reason = False, "rag.settings embedding_service = off"
    else:
        _enabled = True


def enabled() -> bool | None:
    return _enabled


def disabled_reason() -> str:
    return _disabled_reason


class ProtocolError(Exception):
    pass


def _read_exact(sock: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(min(n, 2**20))
        if not chunk:
            raise ProtocolError("the peer closed the connection")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_message(sock: socket.socket, read_exact=None) -> tuple[dict, bytes]:
    """One message; `read_exact(n)` reads n bytes (default: blocking reads of `sock`)."""
    read_exact = read_exact or (lambda n: _read_exact(sock, n))
    json_len, payload_len = HEADER.unpack(read_exact(HEADER.size))
    if json_len > MAX_JSON or payload_len > MAX_JSON:
        raise ProtocolError("message too large")
    header = json.loads(read_exact(json_len))
    return header, read_exact(payload_len) if payload_len else b""


def encode_message(header: dict, payload: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return HEADER.pack(len(data), len(payload)) + data + payload


def write_message(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    sock.sendall(encode_message(header, payload))


def socket_path(directory: str) -> str:
    """The socket of the process whose folder is `directory` (DIR_NAME): beside it."""
    return os.path.join(os.path.dirname(directory) or ".", SOCKET_NAME)


def check_socket_directory(directory: str) -> str | None:
    """Why the folder that holds the socket (pg_stat_tmp) cannot (None if it can): it must
    be a real directory of this OS user that nobody else can write (mode 0700, or 0750 in a
    cluster with group access: the socket itself is 0600)."""
    return _unsafe_folder(os.path.dirname(directory) or ".", 0o022,
                          "can be written by other users")


def check_directory(path: str) -> str | None:
    """Why `path` cannot hold the locks and the log (None if it can): it must be a real
    directory owned by this OS user that nobody else can enter or write."""
    return _unsafe_folder(path, 0o077, "is open to other users", " needs 0700")


def _unsafe_folder(path: str, forbidden: int, what: str, need: str = "") -> str | None:
    """Why `path` is not a directory of this OS user without the `forbidden` mode bits."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to the server's uid {os.geteuid()}"
    if st.st_mode & forbidden:
        return f"{path} {what} (mode {stat.S_IMODE(st.st_mode):o}{need and ','}{need})"
    return None


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {message}", flush=True)


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

        # Idle pool threads that spin wait for the next pass burn the cores that the
        # backends need for their own work between calls (scheduling only: same vectors).
        self.model = Shared({"session.intra_op.allow_spinning": "0",
                             "session.inter_op.allow_spinning": "0"})
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


def main(argv: list[str] | None = None) -> int:
    import argparse  # the process's own; every backend imports this module

    parser = argparse.ArgumentParser(prog="python -m pgask.embedders.shared_process")
    parser.add_argument("--postmaster", type=int, required=True,
                        help="exit when this process (the postmaster) is gone")
    parser.add_argument("--detach", action="store_true",
                        help="fork and return at once (the spawning backend waits for this)")
    args = parser.parse_args(argv)
    if not args.detach:
        return serve(args.postmaster)
    # The spawning backend waits for this first process, which exits once the detached
    # server can be connected to (0), or is gone (1: it failed, its traceback is in
    # service.log), so a backend never waits out its whole deadline for a dead process.
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            word = pipe.read()
        os._exit(0 if word in (b"ready", b"other") else 1)
    os.close(read_end)
    os.setsid()
    return serve(args.postmaster, write_end)


if __name__ == "__main__":
    sys.exit(main())
