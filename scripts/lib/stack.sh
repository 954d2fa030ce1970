# Starting and stopping the services of the local stack as background processes.
# Sourced by scripts/up, down, service, demo and chaos.
#
# A stack runs INSTANCES instances of each service (1 unless asked) and one gateway. Instance N
# of a service listens on the service's port + 10*(N-1) (order 8081, 8091, ...), logs to
# .local/logs/NAME-N.log and keeps its pid in .local/run/NAME-N.pid; the gateway's are
# gateway.log and gateway.pid. The binaries are the workspace's debug build, or its release
# build with --release. .local/run/stack.env remembers the build and the instance count, so
# that later commands start the same binaries and the gateway knows every instance.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOGS=$INFRA_LOGS
RUN=$INFRA_DIR/run
STACK_ENV="$RUN/stack.env"
SERVICES=(order exchange point deadline)

# The stack's build (debug or release) and instance count: stack.env's, or the defaults.
STACK_PROFILE=debug
STACK_INSTANCES=1
if [ -f "$STACK_ENV" ]; then
  # shellcheck source=/dev/null
  source "$STACK_ENV"
fi

# Takes --release out of a command's arguments (it sets STACK_PROFILE); the rest go to ARGS.
take_profile_flag() {
  ARGS=()
  for arg in "$@"; do
    if [ "$arg" = --release ]; then STACK_PROFILE=release; else ARGS+=("$arg"); fi
  done
}

remember_stack() {
  mkdir -p "$RUN"
  printf 'STACK_PROFILE=%s\nSTACK_INSTANCES=%s\n' "$STACK_PROFILE" "$STACK_INSTANCES" >"$STACK_ENV"
}

bin_dir() { echo "${CARGO_TARGET_DIR:-$ROOT/target}/$STACK_PROFILE"; }

# The port of instance $2 (default 1) of service $1.
port_of() { local base; base=$(base_port "$1") || return 2; echo $((base + 10 * (${2:-1} - 1))); }

# The name of an instance's pid and log files: gateway, or NAME-N.
instance_name() { if [ "$1" = gateway ]; then echo gateway; else echo "$1-${2:-1}"; fi; }

binary_of() {
  if [ "$1" = gateway ]; then echo "$(bin_dir)/gateway"; else echo "$(bin_dir)/$1-service"; fi
}

# The base URLs of every instance of a service, comma-separated, for the gateway.
urls_of() {
  local n urls=()
  for n in $(seq "$STACK_INSTANCES"); do urls+=("http://127.0.0.1:$(port_of "$1" "$n")"); done
  (IFS=,; echo "${urls[*]}")
}

pid_of() {
  local file="$RUN/$1.pid"
  [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

# The names of the instances that have a pid file, running or not.
instances_with_pid_files() {
  local file
  for file in "$RUN"/*.pid; do
    [ -e "$file" ] || continue
    file=$(basename "$file" .pid)
    [ "$file" = kafka ] || echo "$file"
  done
}

# The C compiler and make build librdkafka, which rdkafka bundles.
need_build_tools() { need_commands gcc=build-essential make=build-essential; }

build_services() {
  need_build_tools
  local flags=(--quiet --workspace --bins)
  [ "$STACK_PROFILE" = release ] && flags+=(--release)
  echo "building the services (cargo build ${flags[*]:1})"
  (cd "$ROOT" && cargo build "${flags[@]}")
}

answers() { curl -fs -o /dev/null "$1"; }

# Before anything starts: every port of the stack is free, or held by the instance it belongs
# to. Names every port that is taken, and by what.
stack_ports_free() {
  local name n count instance free=0
  for name in "${SERVICES[@]}" gateway; do
    count=$STACK_INSTANCES; [ "$name" = gateway ] && count=1
    for n in $(seq "$count"); do
      instance=$(instance_name "$name" "$n")
      pid_of "$instance" >/dev/null || port_free "$(port_of "$name" "$n")" "$instance" || free=1
    done
  done
  return "$free"
}

# Starts instance $2 (default 1) of service $1, or the gateway, and waits until it is ready.
service_start() {
  local name=$1 n=${2:-1} instance port binary pid
  port=$(port_of "$name" "$n") || return 2
  instance=$(instance_name "$name" "$n")
  if pid=$(pid_of "$instance"); then echo "$instance already running (pid $pid)"; return 0; fi
  binary=$(binary_of "$name")
  [ -x "$binary" ] || build_services
  port_free "$port" "$instance" || return 1
  mkdir -p "$LOGS" "$RUN"
  # The gateway spreads requests over every instance of each service. Each process runs one
  # worker thread unless told otherwise: here several processes share the machine's cores, and
  # a second worker per process mostly hands tasks across threads, costing CPU per saga (the
  # README's performance section has the figures).
  TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-1} PORT=$port \
    ORDER_URL=$(urls_of order) EXCHANGE_URL=$(urls_of exchange) POINT_URL=$(urls_of point) \
    DEADLINE_URL=$(urls_of deadline) \
    setsid "$binary" >>"$LOGS/$instance.log" 2>&1 </dev/null &
  echo $! >"$RUN/$instance.pid"
  local probe=/readyz; [ "$name" = gateway ] && probe=/healthz
  if wait_for 30 "$instance to answer on :$port$probe" answers "http://127.0.0.1:$port$probe"; then
    echo "$instance started on :$port (pid $(cat "$RUN/$instance.pid"), log .local/logs/$instance.log)"
  else
    echo "$instance did not become ready; last lines of .local/logs/$instance.log:" >&2
    tail -n 20 "$LOGS/$instance.log" >&2
    return 1
  fi
}

# SIGTERM: the instance finishes what it started, commits, and exits. Takes an instance name.
instance_stop() {
  local instance=$1 pid waited=0
  if ! pid=$(pid_of "$instance"); then echo "$instance is not running"; rm -f "$RUN/$instance.pid"; return 0; fi
  # SIGCONT too: a paused instance acts on SIGTERM only once it runs again.
  kill -TERM "$pid"
  kill -CONT "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 300 ]; then echo "$instance still running after 30 s; killing it" >&2; kill -KILL "$pid"; fi
    sleep 0.1; waited=$((waited + 1))
  done
  rm -f "$RUN/$instance.pid"
  echo "$instance stopped"
}

# instance_signal INSTANCE SIGNAL DONE: sends SIGSTOP or SIGCONT, and says DONE.
instance_signal() {
  local pid
  if ! pid=$(pid_of "$1"); then echo "$1 is not running" >&2; return 1; fi
  kill "-$2" "$pid"
  echo "$1 $3 (pid $pid)"
}

# SIGKILL: the process dies at once, as in a crash. Takes an instance name.
instance_kill() {
  local instance=$1 pid
  if ! pid=$(pid_of "$instance"); then echo "$instance is not running"; rm -f "$RUN/$instance.pid"; return 0; fi
  kill -KILL "$pid"
  wait_for 10 "the killed $instance (pid $pid) to exit" gone "$pid"
  rm -f "$RUN/$instance.pid"
  echo "$instance killed"
}

# Stops the gateway (first, so that no request reaches a service that is stopping), then every
# instance (SIGTERM), and forgets the stack's build and size.
stack_stop() {
  instance_stop gateway
  for instance in $(instances_with_pid_files); do instance_stop "$instance"; done
  rm -f "$STACK_ENV"
}
