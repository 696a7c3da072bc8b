#!/usr/bin/env bash
# Shared by Scripts/db.sh (one server) and Scripts/citus.sh (a coordinator and workers):
# finding and installing PostgreSQL, running as the cluster's owner, loopback-only clusters.
# Sourced, not run; the caller sets `set -euo pipefail`.

find_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; fi
}

install_postgres() {
  "$(dirname "${BASH_SOURCE[0]}")/prerequisites.sh" --postgres
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# cluster_port COMMAND PORT_FILE OVERRIDE KEY LOW COUNT [WIDTH]: the first of a cluster's WIDTH
# consecutive ports. OVERRIDE when set, else the one recorded in PORT_FILE, else derived from
# KEY (the checkout's path and the cluster's name) in [LOW, LOW + COUNT × WIDTH); on `start`,
# moved on to the next block that is free. The caller records it once the server runs.
# Callers keep [LOW, LOW + COUNT × WIDTH) below 32768, Linux's ephemeral range: a listening
# port there can be taken at any moment by an outgoing connection (seen: a test cluster's
# start failing with "Address already in use" under the suite's load).
cluster_port() {
  local command="$1" file="$2" override="$3" key="$4" low="$5" count="$6" width="${7:-1}" port busy p
  if [ -n "$override" ]; then
    port="$override"
  elif [ -f "$file" ]; then
    port="$(cat "$file")"
  else
    port=$((low + $(printf '%s' "$key" | cksum | cut -d' ' -f1) % count * width))
    while [ "$command" = start ]; do
      busy=false
      for ((p = port; p < port + width; p++)); do if port_in_use "$p"; then busy=true; fi; done
      $busy || break
      port=$((port + width >= low + count * width ? low : port + width))
    done
  fi
  case "$port" in (*[!0-9]*|"") echo "bad port '$port' (from the override or $file)" >&2; return 2;; esac
  echo "$port"
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# ensure_owner_can_reach DIR: the server user owns DIR and can traverse every parent folder.
ensure_owner_can_reach() {
  mkdir -p "$1"
  [ "$(id -u)" = 0 ] || return 0
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  chown postgres:postgres "$1"
  local dir="$1"
  while [ "$dir" != "/" ]; do
    dir="$(dirname "$dir")"
    if ! runuser -u postgres -- test -x "$dir"; then chmod o+x "$dir"; fi
  done
}

# init_cluster DATA_DIR [EXTRA_CONF]: a new cluster (if DATA_DIR has none) owned by the
# superuser `tanhui`, trust authentication, listening on 127.0.0.1 over TCP only.
init_cluster() {
  local data="$1" extra="${2:-}" parent
  [ -f "$data/PG_VERSION" ] && return 0
  parent="$(dirname "$data")"
  ensure_owner_can_reach "$parent"
  as_owner "$bindir/initdb" --pgdata="$data" --username=tanhui --auth=trust \
    --data-checksums --encoding=UTF8 --locale=C.UTF-8 >"$parent/initdb.log" 2>&1 ||
    { cat "$parent/initdb.log" >&2; exit 1; }
  cat >>"$data/postgresql.conf" <<CONF
# Tanhui local cluster: loopback only, TCP only.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
log_min_messages = warning
$extra
CONF
}

# start_server DATA_DIR LOG PORT: starts the server with only stdin/stdout/stderr open. A
# postmaster that inherits a caller's other descriptors (a supervisor's pipe or socket) keeps
# them open for its whole life, and that caller then waits forever for end-of-file.
start_server() {
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    as_owner "$bindir/pg_ctl" start -D "$1" -l "$2" -w -t 60 -o "-p $3" </dev/null >/dev/null 2>&1
  )
}

# running DATA_DIR
running() {
  [ -n "$bindir" ] && [ -f "$1/PG_VERSION" ] && as_owner "$bindir/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# stop_server DATA_DIR [MODE]
stop_server() {
  if running "$1"; then as_owner "$bindir/pg_ctl" stop -D "$1" -m "${2:-fast}" -w >/dev/null; fi
}

# ensure_database URL_WITHOUT_DATABASE NAME
ensure_database() {
  if ! "$bindir/psql" -X "$1/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$2'" | grep -q 1; then
    "$bindir/psql" -X -q "$1/postgres" -c "CREATE DATABASE $2"
  fi
}
