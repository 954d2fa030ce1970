# Kafka and PostgreSQL for local runs and tests, without Docker. Sourced by the other scripts.
#
# infra_up makes both reachable, provisioning what is missing on a fresh machine, and exports
# KAFKA_BOOTSTRAP and PG_URL. A server you point at with those variables is used as it is.
#   Kafka:      Apache Kafka in KRaft mode, jars resolved from Maven Central by `mvn` (kafka/pom.xml)
#               into .local/kafka/libs, data in .local/kafka/data, log in .local/logs/kafka.log.
#   PostgreSQL: Debian's packages and cluster tools; a role saga/saga that may create databases.
# Every wait polls with a timeout.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export ROOT
KAFKA_HOME="$ROOT/.local/kafka"
KAFKA_PID="$ROOT/.local/run/kafka.pid"
DEFAULT_KAFKA=127.0.0.1:9092
DEFAULT_PG=postgres://saga:saga@127.0.0.1:5432

# Polls until a TCP port accepts connections, for at most $3 seconds.
wait_port() {
  local host=$1 port=$2 timeout=$3 waited=0
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    [ "$waited" -lt $((timeout * 10)) ] || return 1
    sleep 0.1; waited=$((waited + 1))
  done
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

kafka_java() {
  java -Xms256m -Xmx768m -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.xml" -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_up() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ] && [ "$KAFKA_BOOTSTRAP" != "$DEFAULT_KAFKA" ]; then
    echo "kafka: using $KAFKA_BOOTSTRAP"; return
  fi
  export KAFKA_BOOTSTRAP=$DEFAULT_KAFKA
  if port_open 127.0.0.1 9092; then echo "kafka: running on $KAFKA_BOOTSTRAP"; return; fi

  mkdir -p "$KAFKA_HOME" "$ROOT/.local/logs" "$ROOT/.local/run"
  if [ ! -f "$KAFKA_HOME/libs/.complete" ]; then
    echo "kafka: resolving the broker's jars from Maven Central (first run only)"
    if ! mvn -B -f "$ROOT/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_HOME/libs" >"$ROOT/.local/logs/maven.log" 2>&1; then
      echo "kafka: maven failed; see .local/logs/maven.log" >&2
      tail -n 20 "$ROOT/.local/logs/maven.log" >&2
      return 1
    fi
    touch "$KAFKA_HOME/libs/.complete"
  fi
  local props="$KAFKA_HOME/server.properties"
  { cat "$ROOT/kafka/server.properties"; echo "log.dirs=$KAFKA_HOME/data"; } >"$props"
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    echo "kafka: formatting storage"
    kafka_java kafka.tools.StorageTool format -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      -c "$props" >/dev/null
  fi
  echo "kafka: starting (log .local/logs/kafka.log)"
  setsid nohup bash -c 'exec "$@"' _ java -Xms256m -Xmx768m \
    -Dlog4j2.configurationFile="$ROOT/kafka/log4j2.xml" -cp "$KAFKA_HOME/libs/*" \
    kafka.Kafka "$props" >>"$ROOT/.local/logs/kafka.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
  if ! wait_port 127.0.0.1 9092 90; then
    echo "kafka: did not start; last lines of .local/logs/kafka.log:" >&2
    tail -n 30 "$ROOT/.local/logs/kafka.log" >&2
    return 1
  fi
  # Waits for the broker to answer, and creates the saga topics ahead of the services.
  local topic=${KAFKA_TOPIC:-choreography.deadline}
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
    --if-not-exists --topic "$topic" --partitions "${KAFKA_PARTITIONS:-6}" --replication-factor 1 >/dev/null
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
    --if-not-exists --topic "$topic.DLT" --partitions 1 --replication-factor 1 >/dev/null
  echo "kafka: running on $KAFKA_BOOTSTRAP (topic $topic)"
}

kafka_down() {
  [ -f "$KAFKA_PID" ] || return 0
  local pid waited=0; pid=$(cat "$KAFKA_PID")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$waited" -ge 600 ]; then kill -KILL "$pid"; fi
      sleep 0.1; waited=$((waited + 1))
    done
    echo "kafka: stopped"
  fi
  rm -f "$KAFKA_PID"
}

# The newest PostgreSQL version installed, if any.
pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1; }

pg_up() {
  if [ -n "${PG_URL:-}" ] && [ "$PG_URL" != "$DEFAULT_PG" ]; then
    echo "postgres: using $PG_URL"; return
  fi
  export PG_URL=$DEFAULT_PG
  if psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; then echo "postgres: running"; return; fi

  if [ -z "$(pg_version)" ]; then
    echo "postgres: installing Debian's packages"
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local version; version=$(pg_version)
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    echo "postgres: starting cluster $version/main"
    pg_ctlcluster "$version" main start
  fi
  wait_port 127.0.0.1 5432 30 || { echo "postgres: not listening on 5432" >&2; return 1; }
  # Each test runs four services with their own connection pools.
  local admin=(runuser -u postgres -- psql -q -v ON_ERROR_STOP=1)
  "${admin[@]}" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'saga') THEN
        CREATE ROLE saga LOGIN PASSWORD 'saga' CREATEDB;
      END IF;
    END \$\$;"
  if [ "$("${admin[@]}" -Atc 'SHOW max_connections')" -lt 300 ]; then
    "${admin[@]}" -c 'ALTER SYSTEM SET max_connections = 300'
    pg_ctlcluster "$version" main restart
    wait_port 127.0.0.1 5432 30
  fi
  local waited=0
  until psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; do
    [ "$waited" -lt 300 ] || { echo "postgres: saga cannot log in" >&2; return 1; }
    sleep 0.1; waited=$((waited + 1))
  done
  echo "postgres: running ($version/main on 127.0.0.1:5432)"
}

pg_down() {
  # Only a cluster this machine runs for us; a server given by PG_URL is left alone.
  if [ -n "${PG_URL:-}" ] && [ "$PG_URL" != "$DEFAULT_PG" ]; then return; fi
  local version; version=$(pg_version)
  [ -n "$version" ] || return 0
  if pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster "$version" main stop -m fast && echo "postgres: stopped"
  fi
}

infra_up() { pg_up; kafka_up; }
infra_down() { kafka_down; pg_down; }
infra_status() {
  if port_open 127.0.0.1 9092; then echo "kafka: up on 127.0.0.1:9092"; else echo "kafka: down"; fi
  if psql "${PG_URL:-$DEFAULT_PG}/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    echo "postgres: up (${PG_URL:-$DEFAULT_PG})"
  else
    echo "postgres: down"
  fi
}
