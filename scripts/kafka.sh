#!/usr/bin/env bash
# Local single-node Kafka (KRaft) from Maven Central jars: start | stop | status.
# Data and logs under var/kafka; a second start reuses the formatted storage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${KAFKA_PORT:-9092}
CPORT=${KAFKA_CONTROLLER_PORT:-9093}
HOME_DIR=${KAFKA_HOME_DIR:-$ROOT/var/kafka}
JARS=$ROOT/var/jars/kafka
DATA=$HOME_DIR/data
LOGS=$HOME_DIR/logs
CONF=$HOME_DIR/server.properties
PIDFILE=$HOME_DIR/kafka.pid
HEAP=${KAFKA_HEAP:-768m}

die() { echo "kafka.sh: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  command -v java >/dev/null || die "Java 17+ is required (apt-get install openjdk-17-jre-headless)"
  [ -n "$(ls "$JARS"/kafka_2.13-*.jar 2>/dev/null)" ] || die "broker jars missing in $JARS: run scripts/setup.sh jars"
  if running && port_open "$PORT"; then echo "kafka: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return; fi
  if port_open "$PORT"; then
    # a broker started by another checkout (or by hand): share it; every test uses its own topics
    echo "kafka: a broker already answers on 127.0.0.1:$PORT (not started by this checkout); using it"; return
  fi
  mkdir -p "$DATA" "$LOGS"
  sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CPORT#g" -e "s#@DATA_DIR@#$DATA#g" \
    infra/kafka/server.properties > "$CONF"
  if [ ! -f "$DATA/meta.properties" ]; then
    CLUSTER_ID=$(java -Xmx128m -cp "$JARS/*" kafka.tools.StorageTool random-uuid)
    java -Xmx256m -cp "$JARS/*" -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" \
      -Dkafka.logs.dir="$LOGS" kafka.tools.StorageTool format --standalone -t "$CLUSTER_ID" -c "$CONF" >"$LOGS/format.log" 2>&1 \
      || { cat "$LOGS/format.log" >&2; die "formatting $DATA failed"; }
  fi
  nohup java -Xms"$HEAP" -Xmx"$HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" \
    -cp "$JARS/*" kafka.Kafka "$CONF" >"$LOGS/kafka.out" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$LOGS/server.log" 2>/dev/null && port_open "$PORT"; then
      echo "kafka: up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), logs $LOGS)"; return
    fi
    running || { tail -20 "$LOGS/kafka.out" "$LOGS/server.log" >&2 2>/dev/null; die "broker exited during start"; }
    sleep 0.5
  done
  die "broker did not answer on 127.0.0.1:$PORT within 60 s (see $LOGS)"
}

stop() {
  if ! running; then echo "kafka: not running"; rm -f "$PIDFILE"; return; fi
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "kafka: stopped"; return; }; sleep 0.5; done
  echo "kafka: no clean stop within 60 s, killing" >&2; kill -KILL "$pid"; rm -f "$PIDFILE"
}

status() {
  if running && port_open "$PORT"; then echo "kafka: up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
  elif port_open "$PORT"; then echo "kafka: up on 127.0.0.1:$PORT (started elsewhere)"
  else echo "kafka: down"; return 1; fi
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
