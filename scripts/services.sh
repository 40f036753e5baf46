#!/usr/bin/env bash
# Redis and (for tests) PostgreSQL on loopback, from Debian's packages: start | stop | status.
# Redis keeps its files under var/redis; PostgreSQL uses Debian's cluster, started with
# pg_ctlcluster (no service manager needed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_DIR=$ROOT/var/redis

die() { echo "services.sh: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

install_pkgs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { as_root apt-get update -qq >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || die "could not install ${missing[*]}; install them yourself (apt-get install ${missing[*]})"
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  command -v redis-server >/dev/null || install_pkgs redis-server
  if redis_up; then echo "redis: up on 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$REDIS_DIR"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do redis_up && { echo "redis: up on 127.0.0.1:$REDIS_PORT"; return; }; sleep 0.1; done
  die "redis did not answer on 127.0.0.1:$REDIS_PORT"
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -n | tail -1; }

start_postgres() {
  command -v pg_ctlcluster >/dev/null && [ -n "$(pg_version)" ] || install_pkgs postgresql
  local v; v=$(pg_version)
  [ -n "$v" ] || die "no PostgreSQL cluster found under /etc/postgresql"
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$v" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || die "could not start PostgreSQL $v"
  fi
  # a superuser role for the current OS user, so tests can create their databases
  local me; me=$(id -un)
  if ! psql -h /var/run/postgresql -d postgres -Atc "select 1" >/dev/null 2>&1; then
    as_root su postgres -c "psql -q -c \"do \\\$\\\$ begin if not exists (select from pg_roles where rolname='$me') then create role \\\"$me\\\" superuser login; end if; end \\\$\\\$;\"" >/dev/null
  fi
  echo "postgresql: $v up on /var/run/postgresql"
}

stop_redis() { redis_up && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; echo "redis: stopped"; }

case "${1:-}" in
  start) start_redis; [ "${WITH_POSTGRES:-0}" = 1 ] && start_postgres; true ;;
  start-redis) start_redis ;;
  start-postgres) start_postgres ;;
  stop) stop_redis ;;
  status) redis_up && echo "redis: up on 127.0.0.1:$REDIS_PORT" || echo "redis: down"
          pg_lsclusters -h 2>/dev/null | awk '{print "postgresql: " $1 " " $2 " " $4}' || true ;;
  install) install_pkgs "${@:2}" ;;
  *) echo "usage: $0 start|start-redis|start-postgres|stop|status|install PKG..." >&2; exit 2 ;;
esac
