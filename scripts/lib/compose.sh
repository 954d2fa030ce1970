# shellcheck shell=bash
# The docker-compose suite (kafka/docker-compose.yml) on this machine, where a Docker engine can
# run but no container registry answers. Sourced by scripts/compose and scripts/compose-test,
# after lib/infra.sh.
#
#   engine_up        makes a Docker engine answer: installs Debian's docker.io and starts
#                    dockerd if none runs (log .local/logs/dockerd.log)
#   engine_down      stops the engine if engine_up started it
#   compose_cli      makes `docker compose` (v2) available, building it with Go if it is missing
#   compose_images   makes present every image the suite starts from: pulled, or, when that
#                    fails, a local stand-in built by e2e-tests/compose/standins/build
#   compose_context  a copy of the build context with the crates vendored: a build inside a
#                    container here cannot reach the crate registry
#   compose ARGS...  `docker compose` on that copy of kafka/docker-compose.yml (project "saga")

COMPOSE_VERSION=v2.29.7
COMPOSE_CONTEXT=$INFRA_DIR/compose/context
DOCKERD_PIDFILE=$INFRA_DIR/run/dockerd.pid
STANDINS=$ROOT/e2e-tests/compose/standins
# Filled by compose_images: the images it pulled or built, for whoever wants to remove them.
IMAGES_CREATED=()

# Runs "$@" with its output in .local/logs/NAME.log; on failure, shows the end of that log.
logged() {
  local name=$1 log=$INFRA_LOGS/$1.log
  shift
  mkdir -p "$INFRA_LOGS"
  if ! "$@" >"$log" 2>&1; then
    echo "$name failed; the end of .local/logs/$name.log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
}

# --- The engine and the CLI --------------------------------------------------------------

engine_pid() {
  local pid
  pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

engine_up() {
  if docker info >/dev/null 2>&1; then
    echo "docker: engine up"
    return
  fi
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    echo "docker: installing Debian's docker.io"
    logged apt-docker sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io'
  fi
  if ! engine_pid >/dev/null; then
    echo "docker: starting dockerd (log .local/logs/dockerd.log)"
    mkdir -p "$INFRA_LOGS" "$(dirname "$DOCKERD_PIDFILE")"
    # As the local Kafka: setsid and nohup, so that the engine outlives this shell.
    (setsid nohup dockerd >>"$INFRA_LOGS/dockerd.log" 2>&1 </dev/null &
      echo $! >"$DOCKERD_PIDFILE")
  fi
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if ! engine_pid >/dev/null || ((SECONDS > deadline)); then
      echo "docker: the engine did not come up within 60 s; the end of .local/logs/dockerd.log:" >&2
      tail -n 30 "$INFRA_LOGS/dockerd.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "docker: engine up (dockerd pid $(engine_pid))"
}

engine_down() {
  local pid deadline=$((SECONDS + 60))
  pid=$(engine_pid) || return 0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS > deadline)); then echo "docker: dockerd still running after 60 s; killing it" >&2; kill -KILL "$pid"; fi
    sleep 0.2
  done
  rm -f "$DOCKERD_PIDFILE"
  echo "docker: engine stopped"
}

# Compose v2 is a Go program; Debian only packages the old docker-compose 1.x. It is built in a
# temporary GOPATH (about 1.5 GB, removed afterwards) and installed as the CLI's plugin.
compose_cli() {
  if docker compose version >/dev/null 2>&1; then return; fi
  local go tmp plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
  go=$(command -v go || echo /usr/local/go/bin/go)
  if [ ! -x "$go" ]; then
    echo "docker compose: missing, and there is no Go toolchain to build it with" >&2
    return 1
  fi
  echo "docker compose: building $COMPOSE_VERSION with Go, from the Go module proxy (a few minutes)"
  tmp=$(mktemp -d)
  if ! GOPATH=$tmp/go GOCACHE=$tmp/cache GOBIN=$tmp/bin GOFLAGS=-modcacherw CGO_ENABLED=0 \
      logged go-compose "$go" install -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION"; then
    rm -rf "$tmp"
    return 1
  fi
  install -D -m 755 "$tmp/bin/cmd" "$plugins/docker-compose"
  rm -rf "$tmp"
  echo "docker compose: $(docker compose version --short) installed in $plugins"
}

# --- Images and the build context --------------------------------------------------------

# The images the suite starts from: the compose file's own (Kafka, PostgreSQL) and the
# Dockerfile's FROM lines.
base_images() {
  docker compose -f "$ROOT/kafka/docker-compose.yml" config --format json | python3 -c '
import json, sys
for service in json.load(sys.stdin)["services"].values():
    if "build" not in service:
        print(service["image"])'
  awk '$1 == "FROM" { print $2 }' "$ROOT/Dockerfile"
}

compose_images() {
  local image missing=() started
  for image in $(base_images | sort -u); do
    if docker image inspect "$image" >/dev/null 2>&1; then
      echo "image $image: present"
    else
      missing+=("$image")
    fi
  done
  IMAGES_CREATED+=("${missing[@]}")
  for image in "${missing[@]}"; do
    # A stand-in builds the Debian one it starts from, which may be on this list too.
    if docker image inspect "$image" >/dev/null 2>&1; then continue; fi
    if docker pull -q "$image" >/dev/null 2>&1; then
      echo "image $image: pulled"
      continue
    fi
    echo "image $image: no registry answers; building a local stand-in (e2e-tests/compose/standins)"
    started=$SECONDS
    KAFKA_LIBS=$KAFKA_LIBS logged "standin-${image//[\/:]/-}" "$STANDINS/build" "$image"
    echo "image $image: stand-in built in $((SECONDS - started)) s"
  done
}

compose_context() {
  echo "build context: the workspace copied to .local/compose/context, its crates vendored"
  rm -rf "$COMPOSE_CONTEXT"
  mkdir -p "$COMPOSE_CONTEXT/.cargo"
  # What .dockerignore leaves out is left out here too.
  tar -C "$ROOT" --exclude=./target --exclude=./.local --exclude=./.git -c . | tar -C "$COMPOSE_CONTEXT" -x
  logged cargo-vendor cargo vendor --locked --manifest-path "$COMPOSE_CONTEXT/Cargo.toml" "$COMPOSE_CONTEXT/vendor"
  cat >>"$COMPOSE_CONTEXT/.cargo/config.toml" <<'TOML'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
TOML
}

compose() {
  local file=$COMPOSE_CONTEXT/kafka/docker-compose.yml
  [ -f "$file" ] || file=$ROOT/kafka/docker-compose.yml
  docker compose -f "$file" "$@"
}

# The stack's containers, running or not.
stack_containers() { docker ps -aq --filter label=com.docker.compose.project=saga; }

# Builds the images and starts the stack, waiting until every service is healthy: the README's
# `docker compose up --build --wait`, in two steps so that the wait's timeout is not the
# build's. Their output goes to .local/logs/compose-build.log and compose-up.log; what shows is
# the build's steps (each once, though every service's build lists it), a count of the crates
# compiled, and the services' state.
stack_up() {
  echo "docker compose build (log .local/logs/compose-build.log)"
  compose --progress plain build 2>&1 | tee "$INFRA_LOGS/compose-build.log" | awk '
      /^#[0-9]+ \[[^]]* [0-9]+\/[0-9]+\]/ {
        step = $0; sub(/^#[0-9]+ \[[^ ]+ /, "[", step)
        if (!seen[step]++) { print "  " step; fflush() }
      }
      / Compiling / { if (++crates % 50 == 0) { printf "  ... %d crates compiled\n", crates; fflush() } }
      / Finished / { print "  " $0; fflush() }
    '
  echo "docker compose up --wait (log .local/logs/compose-up.log)"
  logged compose-up compose up --wait --wait-timeout 180
  compose ps --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}'
}
