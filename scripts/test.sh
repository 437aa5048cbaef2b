#!/usr/bin/env bash
# Runs the test suite. initdb refuses to run as root, so as root the tests run as the
# `postgres` user; a checkout that user cannot read (under /root, say) is copied first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${PGASK_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "no Python environment at $VENV: run make setup first" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
# The folder CI keeps beside the checkout (tests/fix_shared.py), named absolutely so that a
# copied checkout still finds it; a user's clone has none and those tests skip.
if [ -z "${PGASK_SHARED:-}" ] && [ -d "$ROOT/../shared" ]; then
  PGASK_SHARED=$(cd "$ROOT/../shared" && pwd)
fi
export PGASK_SHARED=${PGASK_SHARED:-}
if [ "$(id -u)" -ne 0 ]; then
  cd "$ROOT" && PYTHONPATH="$ROOT/python/src" exec "$VENV/bin/python" -m pytest "$@"
fi

TEST_USER=${PGASK_TEST_USER:-postgres}
python=$VENV/bin/python
if runuser -u "$TEST_USER" -- test -r "$ROOT/Makefile" -a -x "$VENV/bin/python"; then
  workdir=$ROOT
else
  workdir=$(mktemp -d /tmp/pgask-test.XXXXXX)
  echo "$TEST_USER cannot read $ROOT: testing a copy in $workdir"
  tar -C "$ROOT" --exclude=./.pgask -cf - . | tar -C "$workdir" -xf -
  chown -R "$TEST_USER" "$workdir"
  case $VENV in "$ROOT"/*) python=$workdir/${VENV#"$ROOT"/}/bin/python ;; esac
  trap 'rm -rf "$workdir"' EXIT
fi
cd "$workdir"
# pytest's temporary folders go where the test user may write.
runuser -u "$TEST_USER" -- env HOME=/tmp PYTHONPATH="$workdir/python/src" \
  PGASK_TEST_DSN="${PGASK_TEST_DSN:-}" \
  PGASK_SHARED="$PGASK_SHARED" "$python" -m pytest "$@"
