"""The shared model process (issue 31): one copy of the local model per server, started by
the first backend that needs it, with the same vectors as a backend's own copy, and a
fallback to that copy whenever it is down, killed or restarting.

Everything is real: the cluster, the spawned process, its socket; processes are killed
with signals, as a crash or the OOM killer would."""

from __future__ import annotations

import os
import re
import signal
import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgask import __version__

# The benchmark's own: which process serves, and the switch (rag.settings embedding_service).
from pgask_measure.bench.memory import service_pid as _shared_pid
from pgask_measure.bench.memory import set_path as _set_service

TEXTS = [
    "How do I create a B-tree index on two columns?",
    "ünïcödé: 日本語のテキスト, emoji ✓ and Ελληνικά",
    " ",
    ".",
    "\n\t",
    "a",
    "VACUUM " * 400,  # far past the model's 256 word pieces: truncated the same way
    "The quick brown fox jumps over the lazy dog. " * 20,
]


def _service_dir(conn: psycopg.Connection) -> Path:
    (data,) = conn.execute("SHOW data_directory").fetchone()
    return Path(data) / "pg_stat_tmp" / "pgask_embedder"


def _vectors(url: str, texts: list[str]) -> tuple[list, list, str]:
    """Each text alone (rag.embed(text)) and all together (rag.embed(text[])), as float4
    arrays (exact), in a new connection, and the path it took."""
    with psycopg.connect(url, autocommit=True) as conn:
        single = [conn.execute("SELECT rag.embed(%s)::real[]", (t,)).fetchone()[0]
                  for t in texts]
        together = _many(conn, texts)
        (path,) = conn.execute("SELECT rag.embedding_path()").fetchone()
    return single, together, path


def _many(conn: psycopg.Connection, texts: list[str]) -> list:
    """rag.embed(text[]) in one call, each vector as float4[] (exact)."""
    return [v for (v,) in conn.execute(
        "SELECT v::real[] FROM unnest(rag.embed(%s::text[])) WITH ORDINALITY AS u(v, n)"
        " ORDER BY n", (texts,))]


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _servers(directory: Path) -> list[int]:
    """PIDs of embedding services running in this data directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"pgask.embedders.shared_process" in cmdline and Path(cwd) == directory.parents[1]:
            found.append(int(proc.name))
    return found


def test_shared_vectors_equal_in_backend_vectors_bit_for_bit(db, db_url):
    _set_service(db, shared=True)
    shared_single, shared_together, path = _vectors(db_url, TEXTS)
    assert path.startswith("shared model process"), path
    _set_service(db, shared=False)
    own_single, own_together, own_path = _vectors(db_url, TEXTS)
    assert own_path == "in each backend (rag.settings embedding_service = off)"
    # float4 -> Python float is exact: equal floats are equal bits.
    assert shared_single == own_single
    assert shared_together == own_together
    assert len({len(v) for v in shared_single}) == 1 and len(shared_single[0]) == 384


def test_sentence_vectors_from_the_shared_process_equal_the_backends(db):
    """embed_with_spans (the queue stores sentence vectors with each chunk) in one backend:
    through the shared process and with the backend's own model, compared as bytes."""
    db.execute("SELECT rag.embed('start it')")
    db.execute("""
        CREATE FUNCTION pg_temp.same_spans(texts text[]) RETURNS text
        LANGUAGE plpython3u AS $$
        import numpy as np
        from pgask.embedders.local import get_local_embedder
        from pgask.embedders.service import SharedEmbedder
        spans = [[(0, len(t) // 2), (len(t) // 2, len(t))] for t in texts]
        shared = SharedEmbedder()
        a, pa = shared.embed_with_spans(list(texts), spans)
        b, pb = get_local_embedder().embed_with_spans(list(texts), spans)
        if shared.served != 1 or shared.fallbacks:
            return "not served by the shared process"
        same = a.tobytes() == b.tobytes() and all(
            x.tobytes() == y.tobytes() for x, y in zip(pa, pb))
        return "same" if same else "different"
        $$""")
    (answer,) = db.execute("SELECT pg_temp.same_spans(%s)", (TEXTS,)).fetchone()
    assert answer == "same"


def test_a_killed_process_never_fails_a_search_or_a_write_and_comes_back(db, db_url):
    _set_service(db, shared=True)
    db.execute("INSERT INTO rag.documents (source, title, content) VALUES "
               "('a', 'Indexes', 'CREATE INDEX builds a B-tree index on the columns given.')")
    first = _shared_pid(db)
    assert first
    # Killed between calls: the next search and the next (sync, embedding) write still work,
    # and the process is started again on that need.
    _kill(first)
    rows = db.execute("SELECT * FROM rag.search('how to build an index', 3)").fetchall()
    assert rows
    db.execute("INSERT INTO rag.documents (source, title, content) VALUES "
               "('b', 'Vacuum', 'VACUUM reclaims storage occupied by dead tuples.')")
    second = _shared_pid(db)
    assert second and second != first

    # Killed in the middle of a call: the call still returns the vectors it would have.
    texts = [f"sentence {i} about tables and indexes, " * 30 for i in range(60)]
    result: dict = {}

    def embed_many():
        with psycopg.connect(db_url, autocommit=True) as conn:
            result["shared"] = _many(conn, texts)

    worker = threading.Thread(target=embed_many)
    worker.start()
    time.sleep(1.0)
    _kill(second)
    worker.join(120)
    assert "shared" in result
    _set_service(db, shared=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        own = _many(conn, texts)
    assert result["shared"] == own
    _set_service(db, shared=True)
    (count,) = db.execute("SELECT count(*) FROM rag.documents_chunks").fetchone()
    assert count >= 2


def test_a_stuck_process_costs_one_deadline_then_the_backend_embeds_itself(db):
    from pgask.embedders.service import ANSWER_SECONDS, ANSWER_SECONDS_PER_TEXT

    pid = _shared_pid(db)
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        with psycopg.connect(db.info.dsn, autocommit=True) as conn:
            began = time.monotonic()
            (stuck,) = conn.execute("SELECT rag.embed('while it hangs')::real[]").fetchone()
            waited = time.monotonic() - began
            (again,) = conn.execute("SELECT rag.embed('right after')::real[]").fetchone()
            again_s = time.monotonic() - began - waited
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # the backend killed it as stuck (test_attack_shared_model)
    deadline = ANSWER_SECONDS + ANSWER_SECONDS_PER_TEXT
    assert deadline <= waited < deadline + 5  # one deadline, not one per retry
    assert again_s < 5  # the next call goes straight to the backend's own model
    _set_service(db, shared=False)
    with psycopg.connect(db.info.dsn, autocommit=True) as conn:
        (own,) = conn.execute("SELECT rag.embed('while it hangs')::real[]").fetchone()
    assert stuck == own and len(again) == 384


def test_a_stale_socket_file_is_replaced(db):
    pid = _shared_pid(db)
    directory = _service_dir(db)
    sock = directory.parent / f"pgask-embed-{__version__}.sock"
    _kill(pid)  # SIGKILL leaves the socket file behind, with nobody listening
    assert sock.exists()
    with psycopg.connect(db.info.dsn, autocommit=True) as conn:
        conn.execute("SELECT rag.embed('after a crash')")
        new = _shared_pid(conn)
    assert new and new != pid
    assert stat.S_ISSOCK(sock.stat().st_mode)


def test_racing_backends_start_one_process(db, db_url):
    directory = _service_dir(db)
    pid = _shared_pid(db)
    _kill(pid)
    log = directory / "service.log"
    before = log.read_text().count("started:")
    barrier = threading.Barrier(6)
    errors = []

    def search(i: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT rag._python_init()")
                barrier.wait()
                conn.execute("SELECT rag.embed(%s)", (f"racing text {i}",))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=search, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    time.sleep(1.5)  # a second process, had one started, would have logged by now
    assert log.read_text().count("started:") == before + 1
    assert len(_servers(directory)) == 1


def test_a_folder_others_can_enter_is_refused_and_backends_embed_themselves(db, db_url):
    directory = _service_dir(db)
    _shared_pid(db)
    for pid in _servers(directory):
        _kill(pid)
    directory.chmod(0o755)
    try:
        single, _, path = _vectors(db_url, ["still embedded"])
        assert len(single[0]) == 384
        assert path.startswith("in each backend: the shared model process is unavailable")
        assert "needs 0700" in path
        assert not _servers(directory)
    finally:
        directory.chmod(0o700)


def test_doctor_says_which_path_the_database_uses(db, db_url):
    from pgask.doctor import report, run_checks

    _set_service(db, shared=True)
    with psycopg.connect(db_url, autocommit=True) as conn:
        text = report(run_checks(conn))
    assert re.search(r"ok   embedding path: shared model process, pid \d+", text), text
    _set_service(db, shared=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        text = report(run_checks(conn))
    assert ("ok   embedding path: in each backend (rag.settings embedding_service = off)"
            in text), text


@pytest.mark.parametrize("value", ["off", "OFF"])
def test_turned_off_nothing_is_started(db, db_url, value):
    directory = _service_dir(db)
    _shared_pid(db)
    for pid in _servers(directory):
        _kill(pid)
    db.execute("INSERT INTO rag.settings (key, value) VALUES ('embedding_service', %s)"
               " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (value,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT * FROM rag.search('anything', 3)").fetchall()
        conn.execute("SELECT rag.embed('anything')")
    assert not _servers(directory)


# Every SQL entry point that embeds, each in a new connection: none may load the model into
# the backend while the shared process serves (a merge once routed a query's local embedding
# past it; this catches any path that does so).
EMBEDDING_CALLS = {
    "hybrid search": "SELECT count(*) FROM rag.search('vacuum dead tuples', 5)",
    "vector search": "SELECT count(*) FROM rag.search('vacuum dead tuples', 5, mode => 'vector')",
    "extractive answer": "SELECT rag.answer('How do I reclaim dead tuples?', "
                         "model => 'extractive')",
    "rag_answer": "SELECT rag_answer('How do I reclaim dead tuples?')",
    "local rerank": "SELECT count(*) FROM rag.search('vacuum', 3, options => "
                    "'{\"rerank\": \"svc_local_rerank\"}')",
    "rag.embed": "SELECT rag.embed('vacuum')",
}


@pytest.mark.parametrize("call", sorted(EMBEDDING_CALLS))
def test_no_embedding_path_loads_the_model_into_a_backend(db, db_url, call):
    db.execute("INSERT INTO rag.documents (source, title, content) VALUES ('svc/vacuum.md', "
               "'VACUUM', 'VACUUM reclaims the storage of dead tuples after large deletes.')"
               " ON CONFLICT DO NOTHING")
    db.execute("SELECT rag.create_reranker('svc_local_rerank', 'local')")
    db.execute("CREATE OR REPLACE FUNCTION public.svc_loaded(module text) RETURNS bool "
               "LANGUAGE plpython3u AS $$\nimport sys\nreturn module in sys.modules\n$$")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(EMBEDDING_CALLS[call]).fetchall()
        (path,) = conn.execute("SELECT rag.embedding_path()").fetchone()
        assert path.startswith("shared model process"), path
        (loaded,) = conn.execute("SELECT public.svc_loaded('onnxruntime')").fetchone()
    assert not loaded, f"{call} loaded onnxruntime into its backend"


# What a new connection's first search costs is mostly imports (docs/operations.md, "Memory
# per connection"): numpy alone was 100-200 ms of it. A search, in every mode and fusion,
# and rag.embed(text) get their query vector from the shared process as floats and need no
# array, so none may import numpy (the options that compare chunk vectors, mmr and dedupe,
# still do).
NUMPY_FREE_CALLS = {
    "hybrid search (z-score fusion, the default)": "SELECT count(*) FROM rag.search("
                                                    "'vacuum dead tuples', 5)",
    "hybrid search (rrf)": "SELECT count(*) FROM rag.search('vacuum dead tuples', 5, "
                           "options => '{\"fusion\": \"rrf\"}')",
    "vector search": EMBEDDING_CALLS["vector search"],
    "keyword search": "SELECT count(*) FROM rag.search('vacuum dead tuples', 5, "
                      "mode => 'keyword')",
    "rag.embed": EMBEDDING_CALLS["rag.embed"],
}


# Modules a search must not import into a backend either: each costs the first search in a
# new connection milliseconds (issue 31; measured in a backend here: inspect with dataclasses
# ~20 ms, json with re and enum ~15, typing ~7, socket.py ~6, urllib.parse ~5, threading ~2,
# datetime ~2, random ~1.5).
HEAVY_MODULES = ("numpy", "dataclasses", "inspect", "typing", "socket", "socketserver",
                 "threading", "urllib.parse", "datetime", "random", "json", "re", "enum")


@pytest.mark.parametrize("call", sorted(NUMPY_FREE_CALLS))
def test_a_search_does_not_import_numpy_into_a_backend(db, db_url, call):
    db.execute("INSERT INTO rag.documents (source, title, content) VALUES ('svc/vacuum.md', "
               "'VACUUM', 'VACUUM reclaims the storage of dead tuples after large deletes.')"
               " ON CONFLICT DO NOTHING")
    db.execute("CREATE OR REPLACE FUNCTION public.svc_loaded(modules text[]) RETURNS text[] "
               "LANGUAGE plpython3u AS $$\nimport sys\n"
               "return [m for m in modules if m in sys.modules]\n$$")
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(NUMPY_FREE_CALLS[call]).fetchone()[0]
        (loaded,) = conn.execute("SELECT public.svc_loaded(%s)",
                                 (list(HEAVY_MODULES),)).fetchone()
        (path,) = conn.execute("SELECT rag.embedding_path()").fetchone()
        assert path.startswith("shared model process"), path
    assert loaded == [], f"{call} imported {loaded} into its backend"
