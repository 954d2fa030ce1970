# shellcheck shell=bash
# What every script shares: the repository's paths, the stack's ports, waiting with a time
# limit, installing a missing Debian package, and telling who holds a port. Sourced by infra.sh and stack.sh.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
INFRA_DIR=$ROOT/.local
INFRA_LOGS=$INFRA_DIR/logs

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds. After SECONDS it
# says what it waited for and fails, so that no script can hang for ever.
wait_for() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "gave up after $limit s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

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

# True once process $1 has exited.
gone() { ! kill -0 "$1" 2>/dev/null; }

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

# Who listens on local TCP port $1: "NAME (pid N)", or "an unknown process" where ss cannot
# tell (another user's process, or no iproute2).
port_owner() {
  local owner
  owner=$(ss -Hltnp "sport = :$1" 2>/dev/null |
    sed -nE 's/.*users:\(\("([^"]*)",pid=([0-9]+).*/\1 (pid \2)/p' | head -n 1)
  echo "${owner:-an unknown process}"
}

# port_free PORT WHAT: fails, saying which process holds it, when PORT is taken.
port_free() {
  reachable "127.0.0.1:$1" || return 0
  echo "port $1, which $2 needs, is taken by $(port_owner "$1"); stop it, or scripts/down" \
    "if it is a stack started from another checkout" >&2
  return 1
}
