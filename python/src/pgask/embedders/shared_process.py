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

import os
import struct
import sys
import time

from pgask import __version__, jsonlite

# typing.TYPE_CHECKING without importing typing (about 7 ms of a backend's first search)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

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
    try:
        header = jsonlite.loads(read_exact(json_len))
    except RecursionError:  # nested past Python's limit: not a header either side sends
        raise ProtocolError("a header nested too deeply") from None
    return header, read_exact(payload_len) if payload_len else b""


def encode_message(header: dict, payload: bytes = b"") -> bytes:
    data = jsonlite.dumps(header).encode()
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


def main(argv: list[str] | None = None) -> int:
    import argparse  # the process's own; every backend imports this module

    parser = argparse.ArgumentParser(prog="python -m pgask.embedders.shared_process")
    parser.add_argument("--postmaster", type=int, required=True,
                        help="exit when this process (the postmaster) is gone")
    parser.add_argument("--detach", action="store_true",
                        help="fork and return at once (the spawning backend waits for this)")
    args = parser.parse_args(argv)
    from pgask.embedders.shared_server import serve  # not in the backends that import this

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
