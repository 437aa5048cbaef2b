#!/usr/bin/env bash
# `postgres` (the default): creates the cluster on first start (password auth from
# POSTGRES_PASSWORD), installs pgask into the `pgask` database, then runs the server in the
# foreground. Anything else (`pgask worker`, `pgask ask ...`) runs as the postgres OS user,
# named `pgask-<hostname>` in pg_stat_activity so a healthcheck can find its connection.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
if [ "${1:-postgres}" != "postgres" ]; then
  export PGAPPNAME=${PGAPPNAME:-pgask-$(hostname)}
  exec runuser -u postgres -- env HOME=/var/lib/postgresql "$@"
fi
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
mkdir -p "$PGDATA" && chown postgres "$PGDATA"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp) && echo "$POSTGRES_PASSWORD" > "$pwfile" && chown postgres "$pwfile"
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --no-locale
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w start -o "-c listen_addresses=''"
  runuser -u postgres -- "$BIN/psql" -X -q -c "CREATE DATABASE pgask"
  /opt/pgask/.venv/bin/pgask --database-url "postgresql:///pgask?host=/var/run/postgresql&user=postgres" install
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w stop
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*'
