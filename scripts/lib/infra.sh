# shellcheck shell=bash
# What Kafka and PostgreSQL run from, installed where it is missing. Starting, stopping and
# crashing them is the stack tool's job (harness/src/local/infra.rs, through scripts/infra).
#   infra_provision  Java and Maven, the broker's jars, PostgreSQL's server, iproute2 and
#                    iptables (hosts of their own: HOSTS=1, the partition test); a Debian cluster
#                    holding port 5432 is stopped
#   kafka_jars       the broker's jars alone (the Docker images copy them too)
# A server named by KAFKA_BOOTSTRAP or PG_URL needs nothing installed here.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KAFKA_LIBS=$INFRA_DIR/kafka/libs

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

infra_provision() {
  need_commands ip=iproute2 iptables=iptables
  if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
    need_commands java=openjdk-17-jre-headless
    kafka_jars
  fi
  [ -z "${PG_URL:-}" ] || return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql || return 1
  # Installing the package creates Debian's own cluster on port 5432, which the local one needs.
  local cluster
  cluster=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 && $4 ~ /online/ { print $1 " " $2; exit }')
  if [ -n "$cluster" ]; then
    echo "postgres: stopping Debian's cluster $cluster, which holds port 5432"
    # shellcheck disable=SC2086 # "VERSION NAME"
    pg_ctlcluster $cluster stop
  fi
}
