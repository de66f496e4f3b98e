#!/usr/bin/env bash
# Runs a command with private, throwaway PostgreSQL and Redis servers on free loopback ports, then stops
# both by PID. The command sees:
#   LLM_PROXY_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:PORT/postgres  (superuser, trust auth:
#                                tests create their own databases)
#   LLM_PROXY_TEST_REDIS_URL     redis://127.0.0.1:PORT/
#   LLM_PROXY_TEST_REDIS_PORT    PORT (tests that stop or restart Redis start their own private server:
#                                llm_proxy_mocks::redis_server)
# A variable that is already set is used as it is and that server is not started.
# Missing server binaries are installed from Debian when running as root; otherwise the script stops
# with the exact command to run. Nothing is ever skipped silently.
#
# Usage: scripts/test-services.sh COMMAND [ARGS...]
set -euo pipefail

die() { echo "test-services: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ensure_pkg() { # binary-path debian-package
  [ -x "$1" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "test-services: installing Debian package $2 (missing $1)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq "$2" >&2 || die "apt-get install -y $2 failed"
  else
    die "missing $1; install it with: sudo apt-get update && sudo apt-get install -y $2"
  fi
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/llm-proxy-test-services.XXXXXX")
pg_pid=""; redis_pid=""

stop_pid() { # pid
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  [ -n "$redis_pid" ] && stop_pid "$redis_pid"
  [ -n "$pg_pid" ] && stop_pid "$pg_pid"
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_postgres() {
  local bindir
  bindir=$(pg_config --bindir 2>/dev/null || true)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    ensure_pkg /usr/lib/postgresql/15/bin/initdb postgresql
    bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -n1)
  fi
  local port data="$workdir/pg" as=()
  port=$(free_port)
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$workdir" "$data"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bindir/initdb" -D "$data/data" -A trust -U postgres --no-sync >"$workdir/initdb.log" 2>&1 \
    || { cat "$workdir/initdb.log" >&2; die "initdb failed"; }
  "${as[@]}" "$bindir/pg_ctl" -D "$data/data" -l "$data/log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$data/log" >&2; die "PostgreSQL did not start"; }
  pg_pid=$(head -n1 "$data/data/postmaster.pid")
  export LLM_PROXY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "test-services: PostgreSQL pid $pg_pid on 127.0.0.1:$port" >&2
}

start_redis() {
  command -v redis-server >/dev/null || ensure_pkg /usr/bin/redis-server redis-server
  local port
  port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$workdir" \
    >"$workdir/redis.log" 2>&1 &
  redis_pid=$!
  local i
  for i in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    kill -0 "$redis_pid" 2>/dev/null || { cat "$workdir/redis.log" >&2; die "redis-server exited"; }
    sleep 0.1
  done
  export LLM_PROXY_TEST_REDIS_URL="redis://127.0.0.1:$port/" LLM_PROXY_TEST_REDIS_PORT="$port"
  echo "test-services: Redis pid $redis_pid on 127.0.0.1:$port" >&2
}

[ $# -gt 0 ] || die "usage: $0 COMMAND [ARGS...]"
[ -n "${LLM_PROXY_TEST_DATABASE_URL:-}" ] || start_postgres
[ -n "${LLM_PROXY_TEST_REDIS_URL:-}" ] || start_redis
set +e
"$@"
status=$?
set -e
exit $status
