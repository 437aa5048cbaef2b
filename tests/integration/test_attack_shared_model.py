"""Attacks on the shared model process (issue 31) that its own tests
(test_embedding_service.py) do not make: cancelling or terminating a backend that waits on a
stuck process, files planted in the data directory, what the process inherits, answers of
the wrong shape, interleaved calls of several backends, a process that comes up late.

Everything is real: the cluster, the spawned process, its socket; processes are stopped and
killed with signals."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from fix_cluster import BIN
from psycopg import sql
from test_embedding_service import _kill, _servers, _service_dir, _set_service, _shared_pid

from pgask import __version__


def _cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _reference(url: str, texts: list[str]) -> tuple[list, list]:
    """rag.embed(text[]) and each rag.embed(text), computed in a backend's own copy of the
    model (service off)."""
    with psycopg.connect(url, autocommit=True) as conn:
        _set_service(conn, shared=False)
        try:
            with psycopg.connect(url, autocommit=True) as own:
                together = [v for (v,) in own.execute(
                    "SELECT v::real[] FROM unnest(rag.embed(%s::text[])) WITH ORDINALITY"
                    " AS u(v, n) ORDER BY n", (texts,))]
                single = [own.execute("SELECT rag.embed(%s)::real[]", (t,)).fetchone()[0]
                          for t in texts]
                return together, single
        finally:
            _set_service(conn, shared=True)


# -- a backend waiting on a stuck process can be cancelled and terminated at once ---------

BATCH = [f"text number {i} about indexes and vacuum" for i in range(40)]  # deadline 30 s


def test_statement_timeout_ends_a_wait_on_a_stuck_process_promptly(db, db_url):
    pid = _shared_pid(db)
    os.kill(pid, signal.SIGSTOP)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT rag._python_init()")
            conn.execute("SET statement_timeout = '1s'")
            began = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT rag.embed(%s::text[])", (BATCH,))
            waited = time.monotonic() - began
    finally:
        _cont(pid)
    assert waited < 8, f"cancelled after {waited:.1f} s"


def test_pg_terminate_backend_ends_a_wait_on_a_stuck_process_promptly(db, db_url):
    """What `pg_ctl stop -m fast` sends every backend: SIGTERM. A backend that ignores it for
    the whole deadline (10 s + 0.5 s per text) holds up the shutdown past pg_ctl's 60 s."""
    pid = _shared_pid(db)
    os.kill(pid, signal.SIGSTOP)
    outcome: dict = {}
    try:
        conn = psycopg.connect(db_url, autocommit=True)
        conn.execute("SELECT rag._python_init()")
        backend = conn.info.backend_pid

        def embed():
            try:
                conn.execute("SELECT rag.embed(%s::text[])", (BATCH,))
                outcome["result"] = "returned"
            except psycopg.Error as exc:
                outcome["result"] = type(exc).__name__

        worker = threading.Thread(target=embed)
        worker.start()
        time.sleep(1.0)
        began = time.monotonic()
        db.execute("SELECT pg_terminate_backend(%s)", (backend,))
        while time.monotonic() - began < 60:
            (alive,) = db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                  (backend,)).fetchone()
            if not alive:
                break
            time.sleep(0.1)
        gone_after = time.monotonic() - began
        worker.join(60)
        conn.close()
    finally:
        _cont(pid)
    assert gone_after < 8, f"the backend ended {gone_after:.1f} s after SIGTERM"
    assert outcome.get("result") != "returned"


# -- the process runs only pgask's code ----------------------------------------------------

def test_a_module_planted_in_the_data_directory_is_not_run_by_the_process(db, db_url, roles):
    """A role that may write server files (pg_write_server_files, no plpython3u) writes
    argparse.py into the data directory with COPY; the process, started there with
    `python -m`, had the data directory first on its sys.path and ran it as the server's OS
    user, deciding what answers on the socket."""
    directory = _service_dir(db)
    data = directory.parents[1]
    for pid in _servers(directory):
        _kill(pid)
    writer = roles.make("writer", "GRANT pg_write_server_files TO {role}")
    planted = [data / name for name in ("argparse.py", "json.py", "socketserver.py")]
    marker = data / "planted_module_ran"
    code = "import pathlib; pathlib.Path('planted_module_ran').write_text(__name__)"
    try:
        with roles.as_role(writer) as conn:
            for path in planted:
                conn.execute(sql.SQL("COPY (SELECT {}) TO {}").format(
                    sql.Literal(code), sql.Literal(str(path))))
        with psycopg.connect(db_url, autocommit=True) as conn:
            (path,) = conn.execute("SELECT rag.embedding_path()").fetchone()
        assert not marker.exists(), f"the planted {marker.read_text()}.py ran"
        assert path.startswith("shared model process"), path
    finally:
        for path in [*planted, marker]:
            path.unlink(missing_ok=True)


def test_the_process_inherits_no_descriptor_of_the_backend(db):
    pid = _shared_pid(db)
    directory = _service_dir(db)
    unix = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    unexpected = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            if target[8:-1] not in unix:  # a TCP socket: the client's connection
                unexpected.append((fd.name, target))
        elif target.startswith(("pipe:", "anon_inode:")):
            continue  # onnxruntime's and Python's own (eventfd, epoll)
        elif "/.onnxruntime/" in target:
            continue  # onnxruntime's own cache (a backend's copy opens it too)
        elif target != "/dev/null" and not target.startswith(str(directory)):
            unexpected.append((fd.name, target))
    assert not unexpected, unexpected
    # Its working directory is the data directory, as documented.
    assert os.readlink(f"/proc/{pid}/cwd") == str(directory.parents[1])


# -- wrong answers fall back; they never fail the call -------------------------------------

def _fake_server(path: Path, answer: bytes, stop: threading.Event) -> threading.Thread:
    """Listens on `path` (as this OS user, like a broken process would) and answers every
    request with `answer`."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound by its name from its folder, as the real process binds it from the data
    # directory: an absolute path under pytest's default basetemp passes the 107 bytes a
    # socket's path may have.
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        listener.bind(path.name)
    finally:
        os.chdir(cwd)
    listener.listen(16)
    listener.settimeout(0.2)

    def run():
        conns = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conns.append(conn)

            def reply(c=conn):
                try:
                    while True:
                        head = c.recv(8)
                        if len(head) < 8:
                            return
                        json_len, payload_len = struct.unpack("!II", head)
                        need = json_len + payload_len
                        while need:
                            need -= len(c.recv(min(need, 65536)))
                        c.sendall(answer)
                except OSError:
                    return

            threading.Thread(target=reply, daemon=True).start()
        for c in conns:
            c.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _frame(header: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("!II", len(header), len(payload)) + header + payload


@pytest.mark.parametrize("answer", [
    _frame(b'{"ok": true, "rows": 1, "span_rows": [0]}', b"\x00" * 3),  # not whole floats
    _frame(b'[1, 2, 3]'),  # JSON, not an object
    _frame(b'{"ok": true, "rows": 1, "span_rows": [-1]}', b"\x00" * 384 * 4),
    _frame(b'\xff\xfe'),  # not UTF-8
], ids=["ragged-payload", "list-header", "negative-span-rows", "bad-bytes"])
def test_a_process_answering_nonsense_never_fails_the_call(db, db_url, answer):
    vector, own = answered_by_fake(db, db_url, answer,
                                   "SELECT rag.embed('still answered')::real[]")
    assert vector == own


def answered_by_fake(db, db_url, answer: bytes, statement: str) -> tuple:
    """`statement`'s one value with a fake process on the socket giving `answer` to every
    call, and the same statement's value computed in the backend (the shared path off)."""
    directory = _service_dir(db)
    _shared_pid(db)
    for pid in _servers(directory):
        _kill(pid)
    stop = threading.Event()
    sock = directory.parent / f"pgask-embed-{__version__}.sock"
    thread = _fake_server(sock, answer, stop)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            (got,) = conn.execute(statement).fetchone()
    finally:
        stop.set()
        thread.join(5)
        sock.unlink(missing_ok=True)
    _set_service(db, shared=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        (own,) = conn.execute(statement).fetchone()
    _set_service(db, shared=True)
    return got, own


# -- several backends at once get their own vectors ----------------------------------------

def test_interleaved_calls_of_several_backends_get_their_own_vectors(db, db_url):
    _shared_pid(db)
    groups = [[f"backend {b} text {i}: " + "word " * (3 + 37 * ((b + i) % 7))
               for i in range(1 + b * 3)] for b in range(5)]
    expected = [_reference(db_url, texts) for texts in groups]
    got: dict[int, list] = {}
    errors: list = []
    barrier = threading.Barrier(len(groups))

    def run(b: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT rag.embed('warm up')")
                barrier.wait()
                rounds = []
                for _ in range(4):
                    rounds.append([v for (v,) in conn.execute(
                        "SELECT v::real[] FROM unnest(rag.embed(%s::text[])) WITH ORDINALITY"
                        " AS u(v, n) ORDER BY n", (groups[b],))])
                    rounds.append([conn.execute("SELECT rag.embed(%s)::real[]",
                                                (t,)).fetchone()[0] for t in groups[b][:3]])
                got[b] = rounds
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    for b, rounds in got.items():
        for k, vectors in enumerate(rounds):
            want = expected[b][0] if k % 2 == 0 else expected[b][1][:3]
            assert vectors == want, f"backend {b}, round {k}: another backend's vectors?"


# -- a stuck process is replaced; a late one still serves ----------------------------------

def test_a_stuck_process_is_replaced_rather_than_waited_on_by_every_connection(db, db_url):
    """A process that answers nothing (here SIGSTOPped; a deadlock or a frozen cgroup looks
    the same) used to stay, holding its lock and socket, until the server restarted: every
    new connection's first embedding waited out the whole deadline, every 10 s again, and
    nobody started a working one. Nothing to operate by hand means it must be replaced."""
    stuck = _shared_pid(db)
    os.kill(stuck, signal.SIGSTOP)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT rag.embed('the first one waits its deadline')")
        waits = []
        for i in range(2):
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT rag._python_init()")
                began = time.monotonic()
                conn.execute("SELECT rag.embed(%s)", (f"a new connection {i}",))
                waits.append(time.monotonic() - began)
            time.sleep(0.5)
        with psycopg.connect(db_url, autocommit=True) as conn:
            now = _shared_pid(conn)
    finally:
        _cont(stuck)
    assert max(waits) < 8, f"new connections still wait on the stuck process: {waits}"
    assert now and now != stuck
    assert not Path(f"/proc/{stuck}").exists(), "the stuck process was left behind"


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _model_processes() -> dict[int, int]:
    """pid -> parent pid of every process running pgask.embedders.shared_process."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"pgask.embedders.shared_process" in (proc / "cmdline").read_bytes():
                found[int(proc.name)] = _stat(int(proc.name))[1]
        except (OSError, IndexError):
            continue
    return found


def test_a_process_that_comes_up_after_its_launcher_gave_up_still_serves(db, db_url):
    """On a busy machine loading the model can take longer than the spawning backend waits
    (START_SECONDS): its launcher is killed, and the server, once loaded, wrote b"ready" to
    a pipe nobody reads: BrokenPipeError ended it after all that work, socket bound and all.
    Every later start on that machine would end the same way."""
    directory = _service_dir(db)
    _shared_pid(db)
    for pid in _servers(directory):
        _kill(pid)
    before = set(_model_processes())
    done = threading.Event()

    def embed():
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT rag.embed('started late')")
        finally:
            done.set()

    worker = threading.Thread(target=embed)
    worker.start()
    server = launcher = None
    deadline = time.monotonic() + 20
    while server is None and time.monotonic() < deadline:
        procs = _model_processes()
        for pid, parent in procs.items():
            if pid not in before and parent in procs:  # the launcher's forked child
                os.kill(pid, signal.SIGSTOP)
                server, launcher = pid, parent
                break
        else:
            time.sleep(0.002)
    assert server, "no server process seen"
    try:
        while Path(f"/proc/{launcher}").exists() and _stat(launcher)[0] != "Z":
            time.sleep(0.1)  # the backend gives up on it after START_SECONDS
    finally:
        _cont(server)
    worker.join(120)
    time.sleep(5)  # loads the model, binds the socket, reports to the gone launcher
    try:
        alive = Path(f"/proc/{server}").exists() and _stat(server)[0] != "Z"
        assert alive, "the late server ended"
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert _shared_pid(conn) == server
    finally:
        for pid in _servers(directory):
            _kill(pid)


# -- the server's life: restart, fast shutdown while serving, stop -------------------------

def _postmaster(datadir: Path) -> int:
    return int((datadir / "postmaster.pid").read_text().split()[0])


def _wait_gone(pids, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if Path(f"/proc/{p}").exists() and _stat(p)[0] != "Z"]
        if not left:
            return []
        time.sleep(0.1)
    return left


def test_restart_and_fast_shutdown_while_serving_leave_no_process(tmp_path):
    from fix_cluster import Cluster

    from pgask.install import install

    cluster = Cluster(tmp_path)
    cluster.start()
    directory = cluster.datadir / "pg_stat_tmp" / "pgask_embedder"
    try:
        url = cluster.create_database("shared")
        with psycopg.connect(url, autocommit=True) as conn:
            install(conn)
            first = _shared_pid(conn)
        assert f"--postmaster\0{_postmaster(cluster.datadir)}\0".encode() in Path(
            f"/proc/{first}/cmdline").read_bytes()
        cluster.stop()
        assert not _wait_gone([first]), "the process outlived its server"
        cluster.start()
        with psycopg.connect(url, autocommit=True) as conn:
            second = _shared_pid(conn)
        assert second and second != first

        # `pg_ctl stop -m fast` while backends embed through it, one waiting on it stuck.
        expected = _reference(url, BATCH)[0]
        results: list = []

        def embed():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    for _ in range(50):
                        results.append([v for (v,) in conn.execute(
                            "SELECT v::real[] FROM unnest(rag.embed(%s::text[]))"
                            " WITH ORDINALITY AS u(v, n) ORDER BY n", (BATCH,))])
            except psycopg.OperationalError:
                results.append("ended")

        workers = [threading.Thread(target=embed) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(3)
        third = _servers(directory)
        for pid in third:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1)
        began = time.monotonic()
        stopped = subprocess.run([BIN / "pg_ctl", "-D", cluster.datadir, "-m", "fast", "-w",
                                  "-t", "60", "stop"], capture_output=True, text=True)
        stop_s = time.monotonic() - began
        for pid in third:
            _cont(pid)
        for w in workers:
            w.join(60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert stop_s < 20, f"fast shutdown took {stop_s:.1f} s"
        assert all(r == "ended" or r == expected for r in results)
        assert not _wait_gone(_servers(directory)), "processes outlived their server"
    finally:
        cluster.stop()
        for pid in _servers(directory):
            _kill(pid)


# -- the data directory is copied by PostgreSQL's own tools --------------------------------

def test_pg_rewind_from_a_server_whose_process_runs(tmp_path):
    """Failover: the promoted standby embeds (its shared process runs, socket and all), the
    old primary is rewound from it with pg_rewind --source-server, as failover managers do.
    pg_rewind copies every file of the source's data directory that is not in a folder it
    knows to skip; a socket file cannot be read (ENXIO) and the rewind failed."""
    from fix_cluster import Cluster
    from fix_openai import free_port

    from pgask.install import install

    primary = Cluster(tmp_path / "p", {"wal_log_hints": "on", "wal_keep_size": "1GB"})
    (tmp_path / "p").mkdir(exist_ok=True)
    primary.start()
    standby = tmp_path / "s"
    port = free_port()
    try:
        url = primary.create_database("rewound")
        with psycopg.connect(url, autocommit=True) as conn:
            install(conn)
            conn.execute("SELECT rag.embed('on the primary')")
        subprocess.run([BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                        "-U", "postgres", "-D", standby, "-R", "-X", "stream", "-c", "fast"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([BIN / "pg_ctl", "-D", standby, "-l", tmp_path / "s.log", "-w", "-o",
                        f"-p {port} -k {tmp_path} -h 127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        standby_url = f"postgresql://postgres@127.0.0.1:{port}/rewound"
        with psycopg.connect(standby_url, autocommit=True) as conn:
            assert _shared_pid(conn)  # a hot standby's backends share one too
        subprocess.run([BIN / "pg_ctl", "-D", standby, "-w", "promote"], check=True,
                       capture_output=True, timeout=120)
        with psycopg.connect(standby_url, autocommit=True) as conn:
            assert _shared_pid(conn)
            conn.execute("CHECKPOINT")  # pg_control shows the new timeline
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE diverged AS SELECT 1 AS x")
        for pid in _servers_of(primary.datadir):
            _kill(pid)  # as a crash or power loss would: its socket file stays
        primary.stop()
        rewind = subprocess.run(
            [BIN / "pg_rewind", "--target-pgdata", primary.datadir,
             "--source-server", f"host=127.0.0.1 port={port} user=postgres dbname=postgres"],
            capture_output=True, text=True, timeout=300)
        assert rewind.returncode == 0, rewind.stderr[-1500:]
    finally:
        subprocess.run([BIN / "pg_ctl", "-D", standby, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        primary.stop()
        for data in (primary.datadir, standby):
            for pid in _servers_of(data):
                _kill(pid)


def _servers_of(datadir: Path) -> list[int]:
    """PIDs of shared model processes whose working directory is `datadir`."""
    found = []
    for pid in _model_processes():
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == Path(datadir):
                found.append(pid)
        except OSError:
            continue
    return found


def test_sentence_vectors_of_concurrent_backends_are_their_own(db, db_url):
    """embed_with_spans (what a sync write stores for the extractive answerer) from three
    backends at once, texts of mixed lengths and spans of each, against the same call on
    each backend's own model, byte for byte."""
    db.execute("""
        CREATE FUNCTION public.attack_same_spans(texts text[]) RETURNS text
        LANGUAGE plpython3u AS $$
        from pgask.embedders.local import get_local_embedder
        from pgask.embedders.service import SharedEmbedder
        spans = [[(0, len(t) // 3), (len(t) // 3, len(t))] for t in texts]
        shared = SharedEmbedder()
        a, pa = shared.embed_with_spans(list(texts), spans)
        b, pb = get_local_embedder().embed_with_spans(list(texts), spans)
        if shared.served != 1 or shared.fallbacks:
            return "not served by the shared process"
        same = a.tobytes() == b.tobytes() and all(
            x.tobytes() == y.tobytes() for x, y in zip(pa, pb))
        return "same" if same else "different"
        $$""")
    _shared_pid(db)
    answers: list = []
    barrier = threading.Barrier(3)

    def run(b: int) -> None:
        texts = [f"backend {b}, text {i}. " + "Another sentence here. " * (1 + 9 * i)
                 for i in range(2 + b * 4)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT rag.embed('warm up')")
            barrier.wait()
            for _ in range(3):
                answers.append(conn.execute("SELECT public.attack_same_spans(%s)",
                                            (texts,)).fetchone()[0])

    threads = [threading.Thread(target=run, args=(b,)) for b in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert answers == ["same"] * 9, answers


def test_a_huge_text_is_embedded_exactly_and_the_process_survives(db, db_url):
    """A role's 4 MB question (rag.embed is anyone's): the process tokenises all of it, and
    it must neither crash it for everybody nor return other bits than a backend would."""
    pid = _shared_pid(db)
    huge = "pgask embeds énormément de texte " * 130_000
    with psycopg.connect(db_url, autocommit=True) as conn:
        (shared,) = conn.execute("SELECT rag.embed(%s)::real[]", (huge,)).fetchone()
        assert _shared_pid(conn) == pid
    assert Path(f"/proc/{pid}").exists()
    assert shared == _reference(db_url, [huge])[1][0]


def test_its_files_removed_while_it_serves_one_process_comes_back(db, db_url):
    """Someone cleans pg_stat_tmp (or the folder) while the process serves: the old one must
    go (it can no longer be reached), calls must still work, and one new process serve."""
    import shutil

    pid = _shared_pid(db)
    directory = _service_dir(db)
    (directory.parent / f"pgask-embed-{__version__}.sock").unlink()
    shutil.rmtree(directory)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT rag.embed('after the cleanup')")
        new = _shared_pid(conn)
    assert new and new != pid
    assert not _wait_gone([pid], 10), "the unreachable process stayed"
    assert _servers(directory) == [new]
