"""The `pgask` command: run a local database, install pgask into it, ingest files, ask."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pgask.ingest import add_ingest_parser

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def _connect(args):
    import psycopg

    from pgask.localdb import database_url

    url = args.database_url or database_url()
    try:
        return psycopg.connect(url, autocommit=True)
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


def cmd_ask(args) -> int:
    import psycopg

    with _connect(args) as conn:
        try:
            (result,) = conn.execute("SELECT rag.answer(%s, %s)",
                                     (args.question, args.k)).fetchone()
        except psycopg.errors.InvalidParameterValue as exc:
            raise CliError(exc.diag.message_primary) from exc
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print(result["answer"])
    if result["citations"]:
        print("\nSources:")
        for c in result["citations"]:
            start, end = c["span"]
            print(f"  [{c['n']}] {c['title']} ({c['source']}, characters {start}-{end})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgask",
        description="Retrieval-augmented generation inside PostgreSQL. Every command uses "
        "DATABASE_URL when it is set, else the project-local cluster (`pgask db start`).",
    )
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

    add_ingest_parser(sub, _connect)

    ask = sub.add_parser("ask", help="answer a question from the ingested documents",
                         description="Runs rag.answer: retrieves the k best chunks and answers "
                         "with cited sentences, or says it does not know.")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, default=5, help="chunks to retrieve (1-1000, default 5)")
    ask.add_argument("--json", action="store_true", help="print rag.answer's JSON")
    ask.set_defaults(func=cmd_ask)
    return parser


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

        if isinstance(exc, InstallError | LocalDbError | psycopg.Error):
            print(f"pgask {args.command}: {str(exc).strip()}", file=sys.stderr)
            return EXIT_FAILED
        raise
    if args.command == "ingest":
        print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
