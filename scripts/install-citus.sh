#!/usr/bin/env bash
# Builds and installs Citus 12.1.12 for PostgreSQL 15 from a vendored source tarball, for the
# scale-out tests (marker `citus`). Citus is in no registry reachable here and 12.1.x is the last
# line that supports PostgreSQL 15, so CI builds it from ../shared/vendor/ beside the checkout
# (or $PGASK_CITUS_TARBALL). A clone without the tarball skips this step with one line; the
# Citus tests then skip with their own reason. Safe to re-run: an installed 12.1.12 is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CITUS_VERSION=12.1.12
# The SQL extension version that 12.1.x ships (citus.control's default_version).
CITUS_EXT_VERSION=12.1-1
TARBALL=${PGASK_CITUS_TARBALL:-$ROOT/../shared/vendor/citus-$CITUS_VERSION-src.tar.gz}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

control="$($PG_CONFIG --sharedir)/extension/citus.control"
library="$($PG_CONFIG --pkglibdir)/citus.so"
# The control file names the SQL version only (12.1-1 for every 12.1.x), so the library's own
# version string tells 12.1.12 from an older 12.1 build.
if [ -f "$control" ] && [ -f "$library" ] \
   && grep -q "^default_version = '$CITUS_EXT_VERSION'" "$control" \
   && grep -aq "Citus $CITUS_VERSION" "$library"; then
  echo "Citus $CITUS_VERSION already installed"
  exit 0
fi

if [ ! -f "$TARBALL" ]; then
  echo "Citus skipped: no source tarball at $TARBALL (set PGASK_CITUS_TARBALL); the Citus tests will skip"
  exit 0
fi

sums="$(dirname "$TARBALL")/SHA256SUMS"
expected=$(awk -v f="$(basename "$TARBALL")" '$2 == f || $2 == "*" f {print $1}' "$sums" 2>/dev/null || true)
if [ -z "$expected" ]; then
  echo "Citus: no sha256 for $(basename "$TARBALL") in $sums; refusing to build an unchecked tarball" >&2
  exit 1
fi
actual=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  echo "Citus: $TARBALL has sha256 $actual, $sums says $expected" >&2
  exit 1
fi

deps=(liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Citus build dependencies: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The tarball is a `git archive` without a top folder: unpack into a folder of its own.
tar -xzf "$TARBALL" -C "$work"
echo "building Citus $CITUS_VERSION (about 4 minutes on 2 cores)"
(
  cd "$work"
  ./configure -q PG_CONFIG="$PG_CONFIG" >/dev/null
  # nice: the build shares the machine with whatever else runs (tests, other builds).
  nice -n 5 make -s -j"$(nproc)" >/dev/null
  $SUDO make -s install >/dev/null
)
echo "Citus $CITUS_VERSION installed (each node needs shared_preload_libraries = 'citus')"
