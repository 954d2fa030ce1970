# shellcheck shell=bash
# Kafka and PostgreSQL for local runs and tests, without Docker. Sourced by the other scripts.
#
#   infra_up      makes both reachable, provisioning what is missing, and exports
#                 KAFKA_BOOTSTRAP and PG_URL. A server named by those variables is used as it is.
#   infra_down    stops what infra_up started here (data is kept)
#   infra_status  one line for each
#   kafka_kill, pg_kill  crash the local broker (SIGKILL) or PostgreSQL (stop -m immediate)
#   kafka_tool    runs a class from Kafka's jars, e.g. kafka_tool org.apache.kafka.tools.TopicCommand
#                 --bootstrap-server "$KAFKA_BOOTSTRAP" --list
#
# Everything lives in .local/: Kafka's jars (resolved by Maven from kafka/pom.xml) and data,
# a private PostgreSQL cluster (Debian's binaries, run as the postgres OS user), logs, pid files.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_LIBS=$INFRA_DIR/kafka/libs
KAFKA_DATA=$INFRA_DIR/kafka/data
KAFKA_PROPS=$INFRA_DIR/kafka/server.properties
KAFKA_PIDFILE=$INFRA_DIR/run/kafka.pid
PG_DATA=$INFRA_DIR/pg/data
PG_SOCKETS=$INFRA_DIR/pg/run
DEFAULT_KAFKA=127.0.0.1:9092
DEFAULT_PG=postgres://saga:saga@127.0.0.1:5432

kafka_java_opts=(-Dlog4j2.configurationFile="$ROOT/kafka/log4j2.yaml" -cp "$KAFKA_LIBS/*")
# Short-lived JVMs: a small heap and the quick JIT start faster. None may hang a script: two
# minutes is far more than any of them needs.
kafka_tool() {
  timeout 120 java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dkafka.log.level=WARN \
    "${kafka_java_opts[@]}" "$@"
}

# --- Kafka -------------------------------------------------------------------------------

kafka_pid() {
  local pid
  pid=$(cat "$KAFKA_PIDFILE" 2>/dev/null) || return 1
  # The pid file may have outlived its process, and the pid been reused.
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' && echo "$pid"
}

kafka_jars() {
  # The pom's checksum tells whether the jars match it (a changed version must not leave two
  # kafka-clients on the classpath).
  local stamp
  stamp=$(cksum <"$ROOT/kafka/pom.xml")
  [ "$(cat "$KAFKA_LIBS/.pom" 2>/dev/null)" = "$stamp" ] && return
  need_commands java=openjdk-17-jre-headless mvn=maven
  echo "kafka: resolving the broker's jars with Maven (kafka/pom.xml)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$INFRA_LOGS"
  if ! mvn -q -B -f "$ROOT/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_LIBS" >"$INFRA_LOGS/maven.log" 2>&1; then
    echo "kafka: Maven failed; the end of .local/logs/maven.log:" >&2
    tail -n 30 "$INFRA_LOGS/maven.log" >&2
    return 1
  fi
  echo "$stamp" >"$KAFKA_LIBS/.pom"
}

# Starts the local broker if KAFKA_BOOTSTRAP (or the default) does not answer; kafka_wait
# finishes the job, so that PostgreSQL can be set up while the JVM starts.
KAFKA_STARTED=
kafka_start() {
  export KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-$DEFAULT_KAFKA}
  KAFKA_STARTED=
  if reachable "${KAFKA_BOOTSTRAP%%,*}"; then
    echo "kafka: up on $KAFKA_BOOTSTRAP"
    return
  fi
  if [ "$KAFKA_BOOTSTRAP" != "$DEFAULT_KAFKA" ]; then
    echo "kafka: KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP does not answer" >&2
    return 1
  fi
  if kafka_pid >/dev/null; then
    echo "kafka: already starting (pid $(kafka_pid))"
  else
    kafka_jars
    mkdir -p "$KAFKA_DATA" "$INFRA_LOGS" "$(dirname "$KAFKA_PIDFILE")"
    { cat "$ROOT/kafka/server.properties"; echo "log.dirs=$KAFKA_DATA"; } >"$KAFKA_PROPS"
    if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
      echo "kafka: formatting .local/kafka/data"
      kafka_tool kafka.tools.StorageTool format --config "$KAFKA_PROPS" \
        --cluster-id "$(kafka_tool kafka.tools.StorageTool random-uuid)" >/dev/null
    fi
    echo "kafka: starting on $DEFAULT_KAFKA (log .local/logs/kafka.log)"
    # setsid: the broker outlives this shell and is not hit by its Ctrl-C. In a subshell there
    # is no job control, so setsid and nohup exec instead of forking and $! is the JVM's pid.
    # The JVM options are those of the distribution's kafka-server-start.sh, with a smaller heap.
    (setsid nohup java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      "${kafka_java_opts[@]}" kafka.Kafka "$KAFKA_PROPS" >>"$INFRA_LOGS/kafka.log" 2>&1 </dev/null &
      echo $! >"$KAFKA_PIDFILE")
  fi
  KAFKA_STARTED=1
}

# Alive, without kafka_pid's look at the command line, which may still read setsid or nohup.
kafka_alive() { kill -0 "$(cat "$KAFKA_PIDFILE" 2>/dev/null)" 2>/dev/null; }

kafka_wait() {
  [ -n "$KAFKA_STARTED" ] || return 0
  local deadline=$((SECONDS + 90)) topic=${KAFKA_TOPIC:-choreography.deadline}
  until reachable "$DEFAULT_KAFKA"; do
    if ! kafka_alive || ((SECONDS > deadline)); then kafka_failed; return 1; fi
    sleep 0.2
  done
  # The port opens before the broker serves requests; the admin client behind TopicCommand
  # retries until it does, so creating the first topic is also the readiness check. The
  # dead-letter topic needs creating only on a fresh broker (a JVM less on every restart).
  local name partitions
  for name in "$topic" "$topic.DLT"; do
    partitions=${KAFKA_PARTITIONS:-6}; [ "$name" = "$topic" ] || partitions=1
    [ "$name" = "$topic" ] || [ ! -d "$KAFKA_DATA/$name-0" ] || continue
    until kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$DEFAULT_KAFKA" \
        --create --if-not-exists --topic "$name" --partitions "$partitions" \
        --replication-factor 1 >/dev/null; do
      if ! kafka_alive || ((SECONDS > deadline)); then kafka_failed; return 1; fi
      sleep 0.2
    done
  done
  echo "kafka: up on $KAFKA_BOOTSTRAP (pid $(kafka_pid), topics $topic and $topic.DLT)"
}

kafka_failed() {
  echo "kafka: the broker exited, or was not ready within 90 s; the end of .local/logs/kafka.log:" >&2
  tail -n 40 "$INFRA_LOGS/kafka.log" >&2
}

kafka_stop() {
  local pid deadline=$((SECONDS + 60))
  if pid=$(kafka_pid); then
    kill -TERM "$pid"
    kill -CONT "$pid" # a paused broker acts on SIGTERM only once it runs again
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS > deadline)); then echo "kafka: still running after 60 s; killing it" >&2; kill -KILL "$pid"; fi
      sleep 0.2
    done
    echo "kafka: stopped"
  fi
  rm -f "$KAFKA_PIDFILE"
}

# SIGKILL, as in a crash; kafka_start brings the broker back and it recovers its logs.
kafka_kill() {
  local pid
  if ! pid=$(kafka_pid); then echo "kafka: no local broker is running" >&2; return 1; fi
  kill -KILL "$pid"
  wait_for 10 "the killed broker (pid $pid) to exit" gone "$pid"
  rm -f "$KAFKA_PIDFILE"
  echo "kafka: killed"
}

# SIGSTOP and SIGCONT of the local broker, as a long GC pause or a stalled VM would.
kafka_signal() {
  local pid
  if ! pid=$(kafka_pid); then echo "kafka: no local broker is running" >&2; return 1; fi
  kill "-$1" "$pid"
  echo "kafka: $2 (pid $pid)"
}

# --- PostgreSQL --------------------------------------------------------------------------

# The bin directory of the newest PostgreSQL server installed, if any.
pg_bin() {
  local found=(/usr/lib/postgresql/*/bin/initdb)
  [ -e "${found[0]}" ] || return 0
  dirname "$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)"
}

# The server refuses to run as root; cd / because the caller's directory may be closed to it.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_login() { PGCONNECT_TIMEOUT=3 psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; }

pg_running() { [ -n "$(pg_bin)" ] && as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_up() {
  export PG_URL=${PG_URL:-$DEFAULT_PG}
  if pg_login; then
    echo "postgres: up on ${PG_URL#*@}"
    return
  fi
  if [ "$PG_URL" != "$DEFAULT_PG" ]; then
    echo "postgres: PG_URL=$PG_URL does not answer (or rejects its credentials)" >&2
    return 1
  fi
  if [ -z "$(pg_bin)" ]; then apt_install postgresql || return 1; fi
  local bin log=$INFRA_LOGS/postgres.log
  bin=$(pg_bin)
  mkdir -p "$PG_DATA" "$PG_SOCKETS" "$INFRA_LOGS"
  touch "$log"
  chown postgres: "$PG_DATA" "$PG_SOCKETS" "$log"
  chmod 700 "$PG_DATA"
  if ! as_postgres test -w "$PG_DATA"; then
    echo "postgres: the postgres OS user cannot reach $PG_DATA (is a parent directory closed?)" >&2
    return 1
  fi
  if ! pg_running; then
    pg_free_port || return 1
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
      echo "postgres: creating a cluster in .local/pg/data"
      as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    fi
    echo "postgres: starting on 127.0.0.1:5432 (log .local/logs/postgres.log)"
    # Settings go on the command line, so that changing them here needs no new cluster. The
    # socket lives in .local so as not to clash with a Debian cluster's in /var/run/postgresql.
    as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$log" -W start -o "-c listen_addresses=127.0.0.1 \
      -p 5432 -k '$PG_SOCKETS' -c max_connections=300 -c shared_buffers=128MB" >/dev/null
  fi
  local deadline=$((SECONDS + 60))
  # As postgres, whom peer authentication lets in: a probe as root leaves a FATAL in the log.
  until as_postgres "$bin/pg_isready" -q -h "$PG_SOCKETS" -p 5432; do
    if ((SECONDS > deadline)); then
      echo "postgres: did not come up within 60 s; the end of .local/logs/postgres.log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
  # The services create their own databases.
  as_postgres "$bin/psql" -h "$PG_SOCKETS" -p 5432 -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE saga' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'saga') \gexec
ALTER ROLE saga LOGIN CREATEDB PASSWORD 'saga';
SQL
  pg_login || { echo "postgres: saga cannot log in on 127.0.0.1:5432" >&2; return 1; }
  echo "postgres: up on ${PG_URL#*@} (cluster .local/pg/data)"
}

# Port 5432 answers but not to saga/saga, and not from our cluster. The usual culprit is
# Debian's own cluster, which installing the package creates (and may start): stop it.
pg_free_port() {
  reachable 127.0.0.1:5432 || return 0
  local cluster
  cluster=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 && $4 ~ /online/ { print $1 " " $2; exit }')
  if [ -z "$cluster" ]; then
    echo "postgres: port 5432 is taken by $(port_owner 5432), and saga/saga cannot log in to it" >&2
    return 1
  fi
  echo "postgres: stopping Debian's cluster $cluster, which holds port 5432"
  # shellcheck disable=SC2086 # "VERSION NAME"
  pg_ctlcluster $cluster stop
}

pg_stop() {
  pg_running || return 0
  as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  echo "postgres: stopped"
}

# Immediate shutdown: every backend is dropped without a checkpoint, as in a crash, and the
# next start runs crash recovery.
pg_kill() {
  if ! pg_running; then echo "postgres: no local cluster is running" >&2; return 1; fi
  as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null
  echo "postgres: stopped with -m immediate"
}

# --- Both --------------------------------------------------------------------------------

# Before anything starts: the ports of the broker and cluster that infra_up would start here are
# free. A server already answering on 9092, or one named by KAFKA_BOOTSTRAP or PG_URL, is used.
infra_ports_free() {
  if [ -z "${KAFKA_BOOTSTRAP:-}" ] && ! kafka_pid >/dev/null && ! reachable "$DEFAULT_KAFKA"; then
    port_free 9093 "the local Kafka broker's controller" || return 1
  fi
  if [ -z "${PG_URL:-}" ] && ! pg_running && ! PG_URL=$DEFAULT_PG pg_login; then
    pg_free_port || return 1
  fi
}

infra_up() {
  infra_ports_free || return 1
  kafka_start
  pg_up
  kafka_wait
}

infra_down() {
  kafka_stop
  pg_stop
}

infra_status() {
  local kafka=${KAFKA_BOOTSTRAP:-$DEFAULT_KAFKA} pg=${PG_URL:-$DEFAULT_PG} pid where
  where=; pid=$(kafka_pid) && where=" (local, pid $pid)"
  if reachable "${kafka%%,*}"; then echo "kafka: up on $kafka$where"; else echo "kafka: down ($kafka)"; fi
  where=; pg_running && where=" (local cluster .local/pg/data)"
  if PG_URL=$pg pg_login; then echo "postgres: up on ${pg#*@}$where"; else echo "postgres: down (${pg#*@})$where"; fi
}
