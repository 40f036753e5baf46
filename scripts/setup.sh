#!/usr/bin/env bash
# Idempotent set-up: Python virtualenv and dependencies, broker and Spark connector jars
# (Maven Central), web assets (npm). Each step is skipped when its inputs have not changed.
#   scripts/setup.sh            everything for `make run`
#   scripts/setup.sh test       also the test-only parts (dev extras, Chromium, PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
STAMPS=$ROOT/var/stamps
mkdir -p "$STAMPS"
MODE=${1:-run}

die() { echo "setup: $*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { echo "$2" > "$STAMPS/$1"; }

python_deps() {
  local extras=""; [ "$MODE" = test ] && extras="[dev]"
  local h; h=$(hash_of pyproject.toml)-$MODE
  if [ "$MODE" = run ] && fresh python "$(hash_of pyproject.toml)-test"; then return; fi
  fresh python "$h" && return
  command -v python3.11 >/dev/null || command -v python3 >/dev/null || die "Python 3.11 is required"
  local py; py=$(command -v python3.11 || command -v python3)
  "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || die "Python 3.11 is required, found $("$py" --version)"
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  echo "setup: installing Python dependencies into .venv (first time: a few minutes)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".$extras"
  mark python "$h"
}

maven_jars() {
  local h; h=$(hash_of infra/kafka-broker/pom.xml infra/spark-kafka/pom.xml)
  fresh jars "$h" && [ -n "$(ls var/jars/kafka/kafka_2.13-*.jar 2>/dev/null)" ] && return
  command -v java >/dev/null || die "a JDK 17+ is required (apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "Maven is required to fetch the Kafka and Spark jars (apt-get install maven)"
  echo "setup: fetching Kafka broker and Spark Kafka connector jars from Maven Central"
  rm -rf var/jars && mkdir -p var/jars
  (cd infra/kafka-broker && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
     -DincludeScope=runtime -DoutputDirectory="$ROOT/var/jars/kafka")
  (cd infra/spark-kafka && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
     -DincludeScope=runtime \
     -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2 \
     -DoutputDirectory="$ROOT/var/jars/spark")
  [ "$(ls var/jars/spark/*.jar | wc -l)" = 4 ] || die "expected 4 Spark connector jars in var/jars/spark"
  mark jars "$h"
}

web_assets() {
  [ -f web/package.json ] || return 0
  local h; h=$(hash_of web/package.json $(ls web/package-lock.json 2>/dev/null))
  fresh web "$h" && [ -d web/node_modules ] && return
  command -v npm >/dev/null || die "npm is required for the web assets (apt-get install npm)"
  echo "setup: installing web assets with npm"
  (cd web && npm install --no-audit --no-fund --silent)
  mark web "$h"
}

test_tools() {
  command -v chromium >/dev/null || scripts/services.sh install chromium
  # the compose file is validated with the Debian docker-compose client (no engine needed)
  command -v docker-compose >/dev/null || scripts/services.sh install docker-compose
}

python_deps
maven_jars
web_assets
[ "$MODE" = test ] && test_tools
exit 0
