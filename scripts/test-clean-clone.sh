#!/usr/bin/env bash
# Runs the README's test command (make setup && make test) in a clone of this checkout's HEAD
# made in a fresh folder with nothing beside it, as a user's clone is: no ../shared, no .venv,
# no cluster, nothing uncommitted. A test that needs ../shared without asking for the
# shared_data fixture (tests/fix_shared.py) fails here; CI runs this (.ci/run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/pgask-clean-clone.XXXXXX)
# The tests run as the postgres user when this runs as root: it must reach the clone.
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-hardlinks "$ROOT" "$work/pgask"
if [ -e "$work/shared" ]; then
  echo "test-clean-clone: $work/shared exists" >&2
  exit 1
fi
echo "test-clean-clone: $(git -C "$work/pgask" log -1 --format='%h %s' | cut -c1-72) in $work/pgask"
cd "$work/pgask"
env -u PGASK_SHARED -u EVAL_RUNBOOKS -u EVAL_DATASET -u EVAL_SQUAD bash -c 'make setup && make test'
