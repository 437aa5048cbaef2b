"""The local model as a backend uses it: through the server's shared model process when it
answers, in the backend itself when it does not.

`backend_embedder()` is what code running inside PostgreSQL calls instead of
get_local_embedder(). It returns a SharedEmbedder, which sends each call's texts to the
shared process (pgask.embedders.shared_process; started on first need, detached, by
whichever backend finds the socket silent, one at a time) and gets back the vectors that
process computed with the same LocalEmbedder: the same bits the backend would have computed.
When the process cannot be reached, is restarting, or answers too slowly or wrongly, the
call is retried once (which starts a new process) and then computed in the backend with its
own copy of the model: a search or a write never fails because of the shared process. After
such a fallback the backend tries the process again RETRY_SECONDS later.

Turned off (read once per backend by rag._python_init: shared_process.configure), every
backend loads its own copy as before: an embedding_service row 'off' in rag.settings (per
database, from the next connection) or PGASK_EMBEDDING_SERVICE=off in the server's
environment.
"""

from __future__ import annotations

# _socket is the C module under socket.py, and _thread.allocate_lock is threading.Lock: a Unix
# socket client needs nothing more, and importing socket.py (its enums) and threading costs a
# backend about 8 ms of its first search (issue 31).
import _socket
import fcntl
import math
import os
import struct
import sys
import time
from _thread import allocate_lock
from collections import OrderedDict

from pgask.embedders import shared_process as proto
from pgask.embedders import vector_literal
from pgask.embedders.local import (
    DIMENSIONS,
    MAX_INPUT_TOKENS,
    MODEL_NAME,
    QUERY_CACHE_SIZE,
    count_tokens,
    get_local_embedder,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~7 ms in a backend)
if TYPE_CHECKING:  # imported where arrays are made: query_literal() needs none
    import numpy as np

# How long a backend waits for a process that is starting (loading the model takes ~0.5-1 s
# here, more on a busy machine) before it computes in-process instead.
START_SECONDS = 8.0
CONNECT_SECONDS = 1.0
# An answer's deadline: a base, plus time per text (an ingest batch of 32 chunks of 256 word
# pieces takes ~3 s on 2 busy cores).
ANSWER_SECONDS = 10.0
ANSWER_SECONDS_PER_TEXT = 0.5
RETRY_SECONDS = 10.0
# After a call's deadline passed, how long the process gets to answer a status request (no
# model work: answered at once by a process that is only busy) before the backend deems it
# stuck and kills it, so that the next call starts a working one.
PROBE_SECONDS = 2.0
# Every wait on the process is cut into slices this long, between which a cancel of the
# backend is let through (check_interrupts).
POLL_SECONDS = 0.1

class ServiceUnavailable(Exception):
    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class SharedEmbedder:
    """LocalEmbedder's interface, computed by the shared process (or in-process as fallback)."""

    name = MODEL_NAME
    dimensions = DIMENSIONS
    max_input_tokens = MAX_INPUT_TOKENS

    def __init__(self, directory: str | None = None) -> None:
        # A backend's working directory is its data directory; the path stays relative so it
        # never meets the 107-byte limit of a socket path.
        self.directory = directory or proto.DIR_NAME
        self._sock: _socket.socket | None = None
        self._peer = 0  # the pid of the process self._sock is connected to
        self._lock = allocate_lock()
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._down_until = 0.0
        self.last_fallback: str | None = None
        self.fallbacks = 0
        self.served = 0
        self.spawned = 0

    # -- the interface -----------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_with_spans(texts, [[] for _ in texts])[0]

    def embed_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
        if not texts:
            return get_local_embedder_empty(texts, spans)
        served = self._served(texts, spans)
        if served is None:
            return get_local_embedder().embed_with_spans(texts, spans)
        return served

    def embed_query(self, text: str) -> np.ndarray:
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            return cached
        vector = self.embed([text])[0]
        self._query_cache[text] = vector
        if len(self._query_cache) > QUERY_CACHE_SIZE:
            self._query_cache.popitem(last=False)
        return vector

    def query_literal(self, text: str) -> str:
        """The query's vector in pgvector's text form, as vector_literal(embed_query(text))
        gives it, decoded from the process's answer without numpy: importing numpy is the
        largest part of a new connection's first search (about 100-150 ms here), and a
        search needs no array. The same float32 values, so the same text."""
        values = self._served([text], [[]], _decode_one)
        if values is None:
            return get_local_embedder().query_literal(text)
        return vector_literal(values)

    def _served(self, texts, spans, decode=None):
        """The process's answer, decoded (by _decode unless `decode` is given), or None when
        the process is resting after a fallback or fails now (the fallback recorded): the
        caller computes in this backend then."""
        if time.monotonic() < self._down_until:
            return None
        try:
            with self._lock:
                return self._remote(texts, spans, decode)
        except ServiceUnavailable as exc:
            self._fell_back(str(exc))
            return None

    # -- the process ---------------------------------------------------------------------
    def status(self, start: bool = False) -> dict:
        """The process's own figures ({"ok": True, "pid": ...}), or why it cannot be used."""
        try:
            with self._lock:
                if start and self._sock is None:
                    self._connect(start=True)
                header, _ = self._call({"op": "status"}, ANSWER_SECONDS, start=False)
                return header
        except ServiceUnavailable as exc:
            return {"ok": False, "error": str(exc)}

    def _fell_back(self, reason: str) -> None:
        self.fallbacks += 1
        self.last_fallback = reason
        self._down_until = time.monotonic() + RETRY_SECONDS
        try:
            import plpy  # the server log says why this backend loaded its own copy

            plpy.log(f"pgask: the shared model process did not answer ({reason}); "
                     "embedding in this backend")
        except ImportError:
            pass

    def _remote(self, texts, spans, decode=None):
        request = {"op": "embed", "texts": list(texts),
                   "spans": [[list(s) for s in row] for row in spans]
                   if any(spans) else None}
        timeout = ANSWER_SECONDS + ANSWER_SECONDS_PER_TEXT * len(texts)
        try:
            header, payload = self._call(request, timeout, start=True)
        except ServiceUnavailable as exc:
            if exc.timed_out:
                raise  # a stuck or overloaded process would only make the caller wait again
            # Once more: the process may have been restarted; this starts one if none runs.
            header, payload = self._call(request, timeout, start=True)
        try:
            answer = (decode or _decode)(header, payload, len(texts))
        except ServiceUnavailable:
            self._close()
            raise
        self.served += 1
        return answer

    def _call(self, request: dict, timeout: float, start: bool) -> tuple[dict, bytes]:
        sock = self._sock or self._connect(start=start)
        deadline = time.monotonic() + timeout
        try:
            _send_all(sock, proto.encode_message(request), deadline)
            header, payload = proto.read_message(
                sock, lambda n: _recv_exact(sock, n, deadline))
            if not isinstance(header, dict):
                raise proto.ProtocolError(f"a header that is not an object: {header!r:.100}")
        except TimeoutError:
            self._close()
            stuck = self._kill_if_stuck(self._peer)
            raise ServiceUnavailable(f"no answer within {timeout:g} s"
                                     + (f"; killed stuck pid {stuck}" if stuck else ""),
                                     timed_out=True) from None
        except (OSError, proto.ProtocolError, ValueError) as exc:
            self._close()
            raise ServiceUnavailable(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            # Cancelled while waiting (statement_timeout, pg_cancel_backend): the answer, if
            # one comes, must never be read as the next call's.
            self._close()
            raise
        if not header.get("ok"):
            raise ServiceUnavailable(str(header.get("error", "refused")))
        return header, payload

    def _kill_if_stuck(self, pid: int) -> int | None:
        """Kills process `pid` (which just let a call's deadline pass) when it does not
        answer a status request either, within PROBE_SECONDS: a process that is only busy
        answers that at once (no model work, a thread of its own); one that is stopped,
        frozen or deadlocked would otherwise keep its lock and socket until the server
        restarts, every new connection waiting out a deadline on it. Returns the pid killed."""
        if pid <= 0:
            return None
        probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            deadline = time.monotonic() + PROBE_SECONDS
            probe.settimeout(PROBE_SECONDS)  # a full listen backlog blocks connect()
            probe.connect(proto.socket_path(self.directory))
            if _peer_credentials(probe)[0] != pid:
                return None  # another process serves now
            _send_all(probe, proto.encode_message({"op": "status"}), deadline)
            proto.read_message(probe, lambda n: _recv_exact(probe, n, deadline))
            return None  # it answers: busy, not stuck
        except TimeoutError:
            pass
        except (OSError, proto.ProtocolError, ValueError):
            return None  # gone or restarting: the next call starts one
        finally:
            probe.close()
        try:  # the pid is still that process (it holds its socket): check all the same
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"pgask.embedders.shared_process" not in f.read():
                    return None
            os.kill(pid, 9)
        except OSError:
            return None
        return pid

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _try_connect(self) -> _socket.socket | None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(CONNECT_SECONDS)
        try:
            sock.connect(proto.socket_path(self.directory))
            # Only a process of this OS user can have bound it (the folder is 0700), but say
            # so plainly rather than trust the folder alone.
            pid, uid = _peer_credentials(sock)
            if uid != os.geteuid():
                sock.close()
                raise ServiceUnavailable(f"the socket's process runs as uid {uid}")
            self._peer = pid
            return sock
        except (TimeoutError, FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise ServiceUnavailable(f"cannot connect: {exc}") from None

    def _connect(self, start: bool) -> _socket.socket:
        sock = self._try_connect()
        if sock is None and start:
            sock = self._start_and_connect()
        if sock is None:
            raise ServiceUnavailable("no shared model process answers on "
                                     f"{os.path.abspath(proto.socket_path(self.directory))}")
        self._sock = sock
        return sock

    def _prepare_directory(self) -> None:
        try:
            parent = os.path.dirname(self.directory)
            if parent:
                os.makedirs(parent, 0o700, exist_ok=True)  # pg_stat_tmp, made by initdb
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ServiceUnavailable(f"cannot create {self.directory}: {exc}") from None
        problem = (proto.check_directory(self.directory)
                   or proto.check_socket_directory(self.directory))
        if problem:
            raise ServiceUnavailable(problem)

    def _start_and_connect(self) -> _socket.socket | None:
        """Starts the process unless another backend is doing so, and waits for it. The
        spawn lock makes backends take turns: the first starts it, the others find it up."""
        self._prepare_directory()
        deadline = time.monotonic() + START_SECONDS
        fd = os.open(os.path.join(self.directory, proto.SPAWN_LOCK_NAME),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.02)
                    check_interrupts()
            sock = self._try_connect()  # started by the one that held the lock?
            if sock is not None:
                return sock
            self._spawn()
            while time.monotonic() < deadline:
                time.sleep(0.02)
                check_interrupts()
                sock = self._try_connect()
                if sock is not None:
                    return sock
            return None
        finally:
            os.close(fd)  # releases the lock

    def _spawn(self) -> None:
        import subprocess  # only the backend that starts the process needs it

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # Python's own default threads, as in a backend: the same session options.
        log = os.open(os.path.join(self.directory, proto.LOG_NAME),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            launcher = subprocess.Popen(
                [_python(), "-c", _LAUNCH, "--detach", "--postmaster", str(os.getppid())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                close_fds=True, start_new_session=True, cwd=os.getcwd())
            # It forks the server and exits once that answers (0) or died (1).
            end = time.monotonic() + START_SECONDS
            while (code := launcher.poll()) is None:
                if time.monotonic() > end:
                    raise subprocess.TimeoutExpired(launcher.args, START_SECONDS)
                time.sleep(0.02)
                check_interrupts()
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
            raise ServiceUnavailable("the shared model process did not start within "
                                     f"{START_SECONDS:g} s") from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceUnavailable(f"cannot start the shared model process: {exc}") from None
        finally:
            os.close(log)
        self.spawned += 1
        if code != 0:
            raise ServiceUnavailable(
                "the shared model process failed to start (see "
                f"{os.path.abspath(self.directory)}/{proto.LOG_NAME})")


def _check_shape(header: dict, payload: bytes, n: int) -> list[int]:
    """The span rows of an answer to n texts; ServiceUnavailable for any answer of another
    shape (a process that answers wrongly is one that is not there: the backend computes)."""
    span_rows = header.get("span_rows")
    if (header.get("rows") != n or not isinstance(span_rows, list) or len(span_rows) != n
            or not all(type(k) is int and k >= 0 for k in span_rows)):
        raise ServiceUnavailable(f"unexpected answer shape {header!r:.200}")
    if len(payload) != (n + sum(span_rows)) * DIMENSIONS * 4:
        raise ServiceUnavailable("the answer's size does not match its header")
    return span_rows


def _decode_one(header: dict, payload: bytes, n: int) -> tuple[float, ...]:
    """The one vector of an answer to one text, as Python floats (the float32 values)."""
    _check_shape(header, payload, n)
    values = struct.unpack(f"<{DIMENSIONS}f", payload[:DIMENSIONS * 4])
    if not all(math.isfinite(x) for x in values):
        raise ServiceUnavailable("the answer holds a NaN or infinite value")
    return values


def _decode(header: dict, payload: bytes, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The vectors of an answer to n texts, as arrays (see _check_shape)."""
    import numpy as np

    span_rows = _check_shape(header, payload, n)
    values = np.frombuffer(payload, dtype="<f4").astype(np.float32).reshape(-1, DIMENSIONS)
    # Only the texts' vectors: a span's row is NaN where the span was empty (the model's own
    # answer, as get_local_embedder_empty gives it).
    if not np.isfinite(values[:n]).all():
        raise ServiceUnavailable("the answer holds a NaN or infinite value")
    out = values[:n].copy()
    pooled, at = [], n
    for k in span_rows:
        pooled.append(values[at:at + k].copy())
        at += k
    return out, pooled


def _peer_credentials(sock: _socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process listening on the other end of a connected Unix socket."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))
    return pid, uid


def check_interrupts() -> None:
    """Lets a cancel or terminate that arrived while this backend waits on the process
    (statement_timeout, pg_cancel_backend, pg_terminate_backend, a fast shutdown) act now
    instead of after the wait: PostgreSQL only acts on them where it checks for interrupts,
    which executing a statement does (raising QueryCanceled here, or ending the backend).
    Outside a backend (no plpy) there is nothing to check."""
    try:
        import plpy
    except ImportError:
        return
    plpy.execute("SELECT 1")


def _sliced(sock: _socket.socket, deadline: float, operation, *args):
    """``operation(*args)`` on ``sock`` in slices of POLL_SECONDS up to ``deadline``, letting a
    cancel or terminate through between slices; TimeoutError once the deadline has passed."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(min(left, POLL_SECONDS))
        try:
            return operation(*args)
        except TimeoutError:
            check_interrupts()


def _send_all(sock: _socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        sent = _sliced(sock, deadline, sock.send, view)
        view = view[sent:]


def _recv_exact(sock: _socket.socket, n: int, deadline: float) -> bytes:
    parts = []
    while n:
        chunk = _sliced(sock, deadline, sock.recv, min(n, 2**20))
        if not chunk:
            raise proto.ProtocolError("the peer closed the connection")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def get_local_embedder_empty(texts, spans):
    import numpy as np

    return (np.zeros((0, DIMENSIONS), dtype=np.float32),
            [np.full((len(s), DIMENSIONS), np.nan, dtype=np.float32) for s in spans])


# Not `python -m`: that puts the working directory, the data directory, first on sys.path, so
# a file there named like a module the process imports (json.py, written by COPY ... TO by a
# role with pg_write_server_files, say) would run in it. With -c the first entry is '', the
# working directory too: it goes before anything is imported from sys.path.
_LAUNCH = ("import sys\n"
           "if sys.path[:1] == ['']:\n"  # absent under PYTHONSAFEPATH
           "    del sys.path[0]\n"
           "from pgask.embedders.shared_process import main\n"
           "sys.exit(main(sys.argv[1:]))")


def _python() -> str:
    """The interpreter PL/Python embeds (sys.executable is /usr/bin/python3 in a backend)."""
    candidate = os.path.join(sys.base_exec_prefix, "bin",
                             f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return candidate if os.access(candidate, os.X_OK) else (sys.executable or "python3")


_shared: SharedEmbedder | None = None


def in_backend() -> bool:
    """Whether this process is a PostgreSQL backend (its working directory is a data
    directory) that was configured by rag._python_init()."""
    return proto.enabled() is not None and os.path.exists("PG_VERSION")


def backend_embedder():
    """The local model for code running in a backend: shared when it can be, else own."""
    global _shared
    if not proto.enabled() or not in_backend():
        return get_local_embedder()
    if _shared is None:
        _shared = SharedEmbedder()
    return _shared


def describe() -> str:
    """One line for `pgask doctor`: which path this database's backends embed through."""
    if not proto.enabled():
        return f"in each backend ({proto.disabled_reason()})"
    if not os.path.exists("PG_VERSION"):
        return "in each backend (not running in a PostgreSQL backend)"
    embedder = backend_embedder()
    status = embedder.status(start=True)
    if not status.get("ok"):
        return f"in each backend: the shared model process is unavailable ({status['error']})"
    up = time.time() - status["started"]
    return (f"shared model process, pid {status['pid']}, up {up:.0f} s, "
            f"{status['texts']} texts in {status['requests']} calls "
            f"(socket {os.path.abspath(proto.socket_path(embedder.directory))})")
