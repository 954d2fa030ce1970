# shellcheck shell=bash
# The build the local stack runs and the stack tool (harness/src/bin/stack.rs) that starts,
# stops and crashes its processes. Sourced by scripts/up, down, service, infra, test, demo,
# chaos and bench.
#
# The binaries are the workspace's debug build, or its release build with --release;
# .local/run/stack.env (written by the tool) remembers which the running stack uses, so that
# later commands start the same binaries.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STACK_PROFILE=debug
if [ -f "$INFRA_DIR/run/stack.env" ]; then
  # shellcheck source=/dev/null
  source "$INFRA_DIR/run/stack.env"
fi

# Takes --release out of a command's arguments (it sets STACK_PROFILE); the rest go to ARGS.
take_profile_flag() {
  ARGS=()
  for arg in "$@"; do
    if [ "$arg" = --release ]; then STACK_PROFILE=release; else ARGS+=("$arg"); fi
  done
}

bin_dir() { echo "${CARGO_TARGET_DIR:-$ROOT/target}/$STACK_PROFILE"; }

# The C compiler and make build librdkafka, which rdkafka bundles.
need_build_tools() { need_commands gcc=build-essential make=build-essential; }

build_services() {
  need_build_tools
  local flags=(--quiet --workspace --bins)
  [ "$STACK_PROFILE" = release ] && flags+=(--release)
  echo "building the services (cargo build ${flags[*]:1})"
  (cd "$ROOT" && cargo build "${flags[@]}")
}

# Runs the stack tool of the build STACK_PROFILE, building the workspace first if it is missing.
stack() {
  [ -x "$(bin_dir)/stack" ] || build_services
  "$(bin_dir)/stack" "$@"
}
