#!/usr/bin/env bash
# Runs a class from the jars in ../libs with the distribution's variables: KAFKA_HEAP_OPTS,
# KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS. The defaults suit short-lived tools
# (the compose file's health check runs one every few seconds): a small heap and a quick start.
base=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2086 # each variable holds several options
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true} \
  ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base/config/tools-log4j2.yaml} \
  ${KAFKA_OPTS:-} -cp "$base/libs/*" "$@"
