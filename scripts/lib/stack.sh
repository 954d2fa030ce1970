# Starting and stopping the services of the local stack as background processes.
# Sourced by scripts/up, down, service and demo. Logs go to .local/logs/NAME.log, pids to
# .local/run/NAME.pid. The binaries are the workspace's debug build (cargo build --workspace).

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LOGS="$ROOT/.local/logs"
RUN="$ROOT/.local/run"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
SERVICES=(order exchange point deadline gateway)

port_of() {
  case "$1" in
    order) echo 8081 ;; exchange) echo 8082 ;; point) echo 8083 ;; deadline) echo 8084 ;; gateway) echo 8088 ;;
    *) echo "unknown service '$1' (order, exchange, point, deadline or gateway)" >&2; return 2 ;;
  esac
}

binary_of() {
  if [ "$1" = gateway ]; then echo "$BIN/gateway"; else echo "$BIN/$1-service"; fi
}

pid_of() {
  local file="$RUN/$1.pid"
  [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

build_services() {
  echo "building the services (cargo build --workspace --bins)"
  (cd "$ROOT" && cargo build --quiet --workspace --bins)
}

# Polls a URL until it answers 2xx, for at most $2 seconds.
wait_http() {
  local url=$1 timeout=${2:-30} waited=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [ "$waited" -ge $((timeout * 10)) ]; then return 1; fi
    sleep 0.1; waited=$((waited + 1))
  done
}

service_start() {
  local name=$1 port binary
  port=$(port_of "$name") || return 2
  if pid=$(pid_of "$name"); then echo "$name already running (pid $pid)"; return 0; fi
  binary=$(binary_of "$name")
  [ -x "$binary" ] || build_services
  mkdir -p "$LOGS" "$RUN"
  # Each service has one static consumer-group member id, so a restart resumes at once.
  KAFKA_GROUP_INSTANCE_ID="$name-1" PORT=$port setsid "$binary" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  local probe=/readyz; [ "$name" = gateway ] && probe=/healthz
  if wait_http "http://127.0.0.1:$port$probe" 30; then
    echo "$name started on :$port (pid $(cat "$RUN/$name.pid"), log .local/logs/$name.log)"
  else
    echo "$name did not become ready; last lines of .local/logs/$name.log:" >&2
    tail -n 20 "$LOGS/$name.log" >&2
    return 1
  fi
}

# SIGTERM: the service finishes what it started, commits, and exits.
service_stop() {
  local name=$1 pid waited=0
  port_of "$name" >/dev/null || return 2
  if ! pid=$(pid_of "$name"); then echo "$name is not running"; rm -f "$RUN/$name.pid"; return 0; fi
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 300 ]; then echo "$name still running after 30 s; killing it" >&2; kill -KILL "$pid"; fi
    sleep 0.1; waited=$((waited + 1))
  done
  rm -f "$RUN/$name.pid"
  echo "$name stopped"
}

# SIGKILL: the process dies at once, as in a crash.
service_kill() {
  local name=$1 pid
  port_of "$name" >/dev/null || return 2
  if ! pid=$(pid_of "$name"); then echo "$name is not running"; rm -f "$RUN/$name.pid"; return 0; fi
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$RUN/$name.pid"
  echo "$name killed"
}
