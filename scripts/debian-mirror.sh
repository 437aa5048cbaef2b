#!/usr/bin/env bash
# debian_mirror [APT_ETC]: prints the URI this machine's apt uses for the main Debian archive,
# so that setup fetches Debian sources through the same mirror or proxy as everything else
# (companies and some CI runners reach Debian only through one) and no host is hard-coded.
#   - $PGASK_DEBIAN_MIRROR, when set, wins.
#   - Otherwise the first enabled `deb` entry, in apt's own reading order (sources.list, then
#     sources.list.d/ by name), whose components include `main` and one of whose suites is a
#     Debian release (bookworm, trixie, stable, ... with -updates/-backports), never -security:
#     the security archive does not carry other releases' sources.
#   - Both formats: deb822 `*.sources` stanzas and one-line `deb [opts] URI SUITE COMP...`.
# APT_ETC (default $PGASK_APT_ETC, else /etc/apt) lets a test point it at sample files.
# Sourced by scripts/install.sh; `bash scripts/debian-mirror.sh [APT_ETC]` prints the mirror.

debian_mirror() {
  local etc=${1:-${PGASK_APT_ETC:-/etc/apt}}
  if [ -n "${PGASK_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "${PGASK_DEBIAN_MIRROR%/}"
    return 0
  fi
  # apt reads sources.list.d/ in byte order of the names, .list and .sources files alike.
  local LC_ALL=C files=() f
  [ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
  for f in "$etc"/sources.list.d/*; do
    case $f in
      *.list | *.sources) [ -f "$f" ] && files+=("$f") ;;
    esac
  done
  local uri=""
  if [ ${#files[@]} -gt 0 ]; then
    uri=$(awk -f - "${files[@]}" <<'AWK'
# Only POSIX awk (mawk in Debian's slim images, gawk elsewhere).
function debian_suite(s) {
  return s ~ /^(oldoldstable|oldstable|stable|testing|unstable|buster|bullseye|bookworm|trixie|forky|duke|sid)(-updates|-backports|-proposed-updates)?$/
}
function has(list, word,   n, a, i) {
  n = split(list, a, /[ \t]+/)
  for (i = 1; i <= n; i++) if (a[i] == word) return 1
  return 0
}
function any_debian_suite(list,   n, a, i) {
  n = split(list, a, /[ \t]+/)
  for (i = 1; i <= n; i++) if (debian_suite(a[i])) return 1
  return 0
}
function first(list,   n, a) { n = split(list, a, /[ \t]+/); return n ? a[1] : "" }
function accept(uri) {
  if (uri == "" || uri ~ /^cdrom:/) return
  print uri; done = 1; exit
}
# One deb822 stanza is complete: test it, then forget it.
function stanza_end() {
  if (tolower(fields["enabled"]) != "no" && has(fields["types"], "deb") \
      && has(fields["components"], "main") && any_debian_suite(fields["suites"]))
    accept(first(fields["uris"]))
  split("", fields); key = ""
}
FNR == 1 { if (deb822) stanza_end(); deb822 = (FILENAME ~ /\.sources$/) }
!deb822 {
  line = $0; sub(/#.*/, "", line)
  if (line !~ /^[ \t]*deb[ \t]/) next
  sub(/^[ \t]*deb[ \t]+/, "", line)
  if (line ~ /^\[/) sub(/^\[[^\]]*\][ \t]*/, "", line)
  n = split(line, w, /[ \t]+/)
  if (n < 3 || !debian_suite(w[2])) next
  for (i = 3; i <= n; i++) if (w[i] == "main") accept(w[1])
  next
}
/^#/ { next }
/^[ \t]*$/ { stanza_end(); next }
# A continuation line (a field value spread over several lines, e.g. several URIs).
/^[ \t]/ {
  if (key == "") next
  v = $0; sub(/^[ \t]+/, "", v)
  fields[key] = (fields[key] == "" ? v : fields[key] " " v)
  next
}
{
  k = $0; sub(/:.*/, "", k); key = tolower(k)
  v = $0; sub(/^[^:]*:[ \t]*/, "", v); fields[key] = v
}
END { if (!done && deb822) stanza_end() }
AWK
)
  fi
  if [ -z "$uri" ]; then
    echo "no Debian archive mirror found: looked for an enabled 'deb' entry with component 'main'" \
      "and a Debian release suite (bookworm, trixie, stable, ...; -security does not count) in" \
      "$etc/sources.list, $etc/sources.list.d/*.list and $etc/sources.list.d/*.sources." \
      "Set PGASK_DEBIAN_MIRROR to the URI of your Debian mirror (the one that serves dists/)." >&2
    return 1
  fi
  printf '%s\n' "${uri%/}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  debian_mirror "$@"
fi
