#!/usr/bin/env bash
# Local PostgreSQL for Tanhui, provisioned by the project itself.
#
#   Scripts/db.sh [--name NAME] start|stop|status|url|destroy
#
# Each NAME is its own cluster in .tanhui/pg-NAME/ of this checkout (git-ignored), on a
# loopback port chosen at its first start — derived from this checkout's path and the name,
# then the next free one — and recorded in .tanhui/pg-NAME/port, so two checkouts on one
# machine never collide and `url` always prints the right DATABASE_URL (dev is the cluster of
# Scripts/start.sh, test the one of Scripts/test.sh). TANHUI_DB_PORT overrides the port.
# Installs Debian's postgresql and libpq-dev when initdb is missing. As root, the server runs
# as the unprivileged `postgres` user. `start` is idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=dev
if [ "${1:-}" = "--name" ]; then name="$2"; shift 2; fi
command="${1:-status}"
case "$name" in (*[!a-zA-Z0-9_-]*|"") echo "db.sh: bad cluster name '$name'" >&2; exit 2;; esac

cluster="$root/.tanhui/pg-$name"
data="$cluster/data"
log="$cluster/server.log"
port_file="$cluster/port"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# 20000–39999, from the checkout's path and the cluster's name (TANHUI_DB_NAMESPACE too).
derived_port=$((20000 + $(printf '%s' "$root:${TANHUI_DB_NAMESPACE:-}$name" | cksum | cut -d' ' -f1) % 20000))
if [ -n "${TANHUI_DB_PORT:-}" ]; then
  port="$TANHUI_DB_PORT"
elif [ -f "$port_file" ]; then
  port="$(cat "$port_file")"
else
  port="$derived_port"
  if [ "$command" = start ]; then
    while port_in_use "$port"; do port=$(( port >= 39999 ? 20000 : port + 1 )); done
  fi
fi
case "$port" in (*[!0-9]*|"") echo "db.sh: bad port '$port' (from TANHUI_DB_PORT or $port_file)" >&2; exit 2;; esac
url="postgresql://tanhui@127.0.0.1:$port/tanhui"

find_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; fi
}

install_postgres() {
  if [ "$(id -u)" != 0 ]; then
    echo "db.sh: PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql libpq-dev" >&2
    exit 1
  fi
  echo "db.sh: installing PostgreSQL and libpq-dev from Debian's packages…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql libpq-dev pkg-config >&2
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ensure_owner_can_reach() {
  [ "$(id -u)" = 0 ] || return 0
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  mkdir -p "$cluster"
  chown postgres:postgres "$cluster"
  # The server user must be able to traverse every parent folder of the cluster.
  local dir="$cluster"
  while [ "$dir" != "/" ]; do
    dir="$(dirname "$dir")"
    if ! runuser -u postgres -- test -x "$dir"; then chmod o+x "$dir"; fi
  done
}

bindir="$(find_bindir)"
if [ -z "$bindir" ] && [ "$command" = start ]; then
  install_postgres
  bindir="$(find_bindir)"
fi

# Starts the server with only stdin/stdout/stderr open. A postmaster that inherits a
# caller's other descriptors (a supervisor's pipe or socket) keeps them open for its whole
# life, and that caller then waits forever for end-of-file.
start_server() {
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    as_owner "$bindir/pg_ctl" start -D "$data" -l "$log" -w -t 60 -o "-p $port" </dev/null >/dev/null 2>&1
  )
}

running() {
  [ -n "$bindir" ] && [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

case "$command" in
  start)
    ensure_owner_can_reach
    mkdir -p "$cluster"
    if [ ! -f "$data/PG_VERSION" ]; then
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$cluster"
      as_owner "$bindir/initdb" --pgdata="$data" --username=tanhui --auth=trust \
        --data-checksums --encoding=UTF8 --locale=C.UTF-8 >"$cluster/initdb.log" 2>&1 ||
        { cat "$cluster/initdb.log" >&2; exit 1; }
      cat >>"$data/postgresql.conf" <<CONF
# Tanhui local cluster: loopback only, TCP only.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
log_min_messages = warning
CONF
    fi
    if ! running; then
      start_server || { tail -n 20 "$log" >&2; exit 1; }
    fi
    # The port the server really listens on (it may have been started before the port file existed).
    port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || echo "$port")"
    url="postgresql://tanhui@127.0.0.1:$port/tanhui"
    [ -n "${TANHUI_DB_PORT:-}" ] || echo "$port" >"$port_file"
    if ! "$bindir/psql" "postgresql://tanhui@127.0.0.1:$port/postgres" -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'tanhui'" | grep -q 1; then
      "$bindir/psql" -q "postgresql://tanhui@127.0.0.1:$port/postgres" -c "CREATE DATABASE tanhui"
    fi
    echo "PostgreSQL '$name' running: $url" >&2
    ;;
  stop)
    if running; then as_owner "$bindir/pg_ctl" stop -D "$data" -m fast -w >/dev/null; fi
    echo "PostgreSQL '$name' stopped" >&2
    ;;
  kill)
    # For fault tests: SIGKILL the postmaster, as a crash would.
    if [ -f "$data/postmaster.pid" ]; then kill -9 "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null || true; fi
    ;;
  status)
    if running; then echo "running: $url"; else echo "stopped"; exit 3; fi
    ;;
  url)
    echo "$url"
    ;;
  destroy)
    if running; then as_owner "$bindir/pg_ctl" stop -D "$data" -m immediate -w >/dev/null; fi
    rm -rf "$cluster"
    ;;
  *)
    echo "usage: Scripts/db.sh [--name NAME] start|stop|status|url|kill|destroy" >&2
    exit 2
    ;;
esac
