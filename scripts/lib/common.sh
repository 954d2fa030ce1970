# shellcheck shell=bash
# What every script shares: the repository's paths, the stack's ports, installing a missing
# Debian package and telling whether a port answers. Sourced by infra.sh and stack.sh.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
INFRA_DIR=$ROOT/.local
INFRA_LOGS=$INFRA_DIR/logs

# The port of the first instance of service $1 (or the gateway), from the table the Rust harness
# reads too (scripts/lib/ports).
base_port() {
  local port
  port=$(awk -v name="$1" '!/^#/ && $1 == name { print $2 }' "$ROOT/scripts/lib/ports")
  if [ -z "$port" ]; then
    echo "unknown service '$1' (order, exchange, point, deadline or gateway)" >&2
    return 2
  fi
  echo "$port"
}

# The port of the first instance of every service and the gateway, one a line.
base_ports() { awk '!/^#/ && NF { print $2 }' "$ROOT/scripts/lib/ports"; }

# apt_install PACKAGE...: installs Debian's packages, as root or through sudo, logging to
# .local/logs/apt.log; on failure it shows the log's end.
apt_install() {
  [ $# -gt 0 ] || return 0
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
  echo "installing Debian's $* (log .local/logs/apt.log)"
  mkdir -p "$INFRA_LOGS"
  if ! { "${as_root[@]}" apt-get update &&
      "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; } \
      >"$INFRA_LOGS/apt.log" 2>&1; then
    echo "apt-get install $* failed (as root, or with sudo without a password); the end of" \
      ".local/logs/apt.log:" >&2
    tail -n 30 "$INFRA_LOGS/apt.log" >&2
    return 1
  fi
}

# need_commands COMMAND=PACKAGE...: installs, with one apt-get, the package of every command
# that is missing, e.g. need_commands mvn=maven java=openjdk-17-jre-headless.
need_commands() {
  local pair packages=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || packages+=("${pair#*=}")
  done
  # The same package may stand for several commands (gcc and make: build-essential).
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u | grep .)
  apt_install "${packages[@]}"
}

# True when HOST:PORT accepts a TCP connection within 3 s.
# shellcheck disable=SC2016 # $0 and $1 belong to the inner bash
reachable() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "${1%:*}" "${1##*:}" 2>/dev/null; }
