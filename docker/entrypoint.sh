#!/usr/bin/env bash
# `postgres` (the default): creates the cluster on first start (password auth from
# POSTGRES_PASSWORD), installs pgask into the `pgask` database, then runs the server in the
# foreground. Anything else (`pgask worker`, `pgask ask ...`) runs as the postgres OS user,
# named `pgask-<hostname>` in pg_stat_activity so a healthcheck can find its connection.
# In the image it starts as root and runs everything as postgres. Started as another user it
# runs everything as that user, which is how tests/integration/test_docker_entrypoint.py runs
# this very file outside a container (PGASK_HOME, PGASK_SOCKET_DIR and PGPORT point it at a
# checkout, a socket folder and a port of its own; the image leaves them at their defaults).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
APP=${PGASK_HOME:-/opt/pgask}
SOCKETS=${PGASK_SOCKET_DIR:-/var/run/postgresql}
AS_POSTGRES=()
if [ "$(id -u)" -eq 0 ]; then
  AS_POSTGRES=(runuser -u postgres -- env HOME=/var/lib/postgresql)
fi

if [ "${1:-postgres}" != "postgres" ]; then
  export PGAPPNAME=${PGAPPNAME:-pgask-$(hostname)}
  exec "${AS_POSTGRES[@]}" "$@"
fi
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
mkdir -p "$PGDATA"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$PGDATA"; fi
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp) && echo "$POSTGRES_PASSWORD" > "$pwfile"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$pwfile"; fi
  "${AS_POSTGRES[@]}" "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --no-locale
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "${AS_POSTGRES[@]}" "$BIN/pg_ctl" -D "$PGDATA" -w start \
    -o "-c listen_addresses='' -c unix_socket_directories='$SOCKETS'"
  "${AS_POSTGRES[@]}" "$BIN/psql" -X -q -h "$SOCKETS" -U postgres -d postgres \
    -c "CREATE DATABASE pgask"
  "$APP/.venv/bin/pgask" --database-url "postgresql:///pgask?host=$SOCKETS&user=postgres" install
  "${AS_POSTGRES[@]}" "$BIN/pg_ctl" -D "$PGDATA" -w stop
fi
exec "${AS_POSTGRES[@]}" "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' \
  -c unix_socket_directories="$SOCKETS"
