#!/usr/bin/env bash
# A local Citus cluster for Tanhui: a coordinator and two workers on 127.0.0.1, provisioned by
# the project itself.
#
#   Scripts/citus.sh [--name NAME] start|stop|status|url|destroy|install
#
# `install` builds Citus from the vendored source (../shared/vendor/citus-*.tar.gz, see
# CITUS.md there) and installs it into the newest installed PostgreSQL — once per machine:
# skipped when the installed citus.so is this tarball's build for this server version.
# `start` (idempotent) installs when needed, starts the three nodes in .tanhui/citus-NAME/ of
# this checkout (git-ignored) on loopback ports chosen like db.sh's (coordinator P, workers
# P+1 and P+2, recorded in .tanhui/citus-NAME/port; TANHUI_CITUS_PORT sets P), creates the
# extensions, adds the workers, runs `tanhui migrate` against the coordinator (TANHUI_BIN, else
# this checkout's debug build) and applies Schema/citus/distribute.sql once. `url` prints the
# coordinator's DATABASE_URL.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=dev
if [ "${1:-}" = "--name" ]; then name="$2"; shift 2; fi
command="${1:-status}"
case "$name" in (*[!a-zA-Z0-9_-]*|"") echo "citus.sh: bad cluster name '$name'" >&2; exit 2;; esac

source "$root/Scripts/pg-lib.sh"

cluster="$root/.tanhui/citus-$name"
port_file="$cluster/port"
# Like db.sh: the coordinator's port P (workers P+1, P+2) is derived from this checkout's path
# and the name (TANHUI_DB_NAMESPACE too), 40000–49998 in steps of 3, clear of db.sh's
# 20000–39999; at the first start the next free triple is taken, then recorded in
# .tanhui/citus-NAME/port. TANHUI_CITUS_PORT overrides it.
port="$(cluster_port "$command" "$port_file" "${TANHUI_CITUS_PORT:-}" "$root:${TANHUI_DB_NAMESPACE:-}citus-$name" 30000 900 3)"
worker_ports=($((port + 1)) $((port + 2)))
url="postgresql://tanhui@127.0.0.1:$port/tanhui"
vendor="$root/../shared/vendor"

bindir="$(find_bindir)"
if [ -z "$bindir" ] && { [ "$command" = start ] || [ "$command" = install ]; }; then
  install_postgres
  bindir="$(find_bindir)"
fi

node_dirs() { echo "$cluster/coordinator"; for p in "${worker_ports[@]}"; do echo "$cluster/worker-$p"; done; }
node_port() { case "$1" in (*/coordinator) echo "$port";; (*) echo "${1##*-}";; esac; }

# What identifies a build: the tarball's content and the server it was built against.
build_stamp() {
  local tarball="$1"
  echo "$(basename "$tarball") $(sha256sum "$tarball" | cut -c1-16) for $("$bindir/postgres" --version)"
}

install_citus() {
  local tarball libdir stamp_file stamp
  tarball="$(ls "$vendor"/citus-*.tar.gz 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$tarball" ]; then echo "citus.sh: no Citus source in $vendor" >&2; exit 1; fi
  libdir="$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo "$(dirname "$bindir")/lib")"
  stamp_file="$libdir/citus.tanhui-build"
  stamp="$(build_stamp "$tarball")"
  if [ -f "$libdir/citus.so" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  "$root/Scripts/prerequisites.sh" --citus
  # One build per machine: a second checkout waits here, then finds the stamp.
  exec 8>/tmp/tanhui-citus-install.lock
  flock 8
  if [ -f "$libdir/citus.so" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then exec 8>&-; return 0; fi
  local work started
  work="$(mktemp -d)"
  started=$(date +%s)
  echo "citus.sh: building $(basename "$tarball") (a few minutes, once per machine)…" >&2
  tar xzf "$tarball" -C "$work"
  local src
  src="$(ls -d "$work"/citus-*/ | head -n 1)"
  # PostgreSQL 15.20+ exports have_createdb_privilege(), which Citus 13.2 also defines for
  # PostgreSQL < 16; the vendored patch drops Citus's copy. Older servers need Citus's copy.
  if grep -q have_createdb_privilege "$("$bindir/pg_config" --includedir-server)/commands/dbcommands.h"; then
    (cd "$src" && patch -s -p1 <"$vendor/citus-13.2.2-pg15.20.patch")
  fi
  # C builds share the Swift build lock: two cores, several checkouts.
  (
    cd "$src"
    ./configure --without-libcurl PG_CONFIG="$bindir/pg_config" >"$work/configure.log" 2>&1 ||
      { tail -n 30 "$work/configure.log" >&2; exit 1; }
    flock /tmp/tanhui-swift-build.lock nice -n 5 make -j2 with_llvm=no >"$work/make.log" 2>&1 ||
      { tail -n 30 "$work/make.log" >&2; exit 1; }
    make install with_llvm=no >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log" >&2; exit 1; }
  )
  echo "$stamp" >"$stamp_file"
  echo "citus.sh: Citus built and installed in $(($(date +%s) - started)) s" >&2
  rm -rf "$work"
  exec 8>&-
}

psql_at() { local p="$1" db="$2"; shift 2; "$bindir/psql" -X -q -v ON_ERROR_STOP=1 "postgresql://tanhui@127.0.0.1:$p/$db" "$@"; }

tanhui_binary() {
  if [ -n "${TANHUI_BIN:-}" ]; then echo "$TANHUI_BIN"; return; fi
  (cd "$root" && flock /tmp/tanhui-swift-build.lock nice -n 5 swift build --product tanhui >&2)
  echo "$(cd "$root" && swift build --show-bin-path)/tanhui"
}

# setup_database DB [bare]: DB on every node, the citus extension in each, the workers added
# to the coordinator's metadata; unless bare, `tanhui migrate` and Schema/citus/distribute.sql
# (once: skipped when the schema is distributed already).
setup_database() {
  local db="$1" mode="${2:-full}" dir p
  for dir in $(node_dirs); do
    p="$(node_port "$dir")"
    ensure_database "postgresql://tanhui@127.0.0.1:$p" "$db"
    PGOPTIONS='-c client_min_messages=warning' psql_at "$p" "$db" -c "CREATE EXTENSION IF NOT EXISTS citus"
  done
  psql_at "$port" "$db" -tA >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', $port);
$(for p in "${worker_ports[@]}"; do
  echo "SELECT citus_add_node('127.0.0.1', $p) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = $p);"
done)
SQL
  [ "$mode" = bare ] && return 0
  DATABASE_URL="postgresql://tanhui@127.0.0.1:$port/$db" "$(tanhui_binary)" migrate >&2
  if [ "$(psql_at "$port" "$db" -tAc "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'ledger_transactions'::regclass")" = 0 ]; then
    PGOPTIONS='-c client_min_messages=warning' psql_at "$port" "$db" -f "$root/Schema/citus/distribute.sql" >/dev/null
  fi
}

drop_database() {
  local dir
  for dir in $(node_dirs); do
    "$bindir/psql" -X -q "postgresql://tanhui@127.0.0.1:$(node_port "$dir")/postgres" \
      -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
  done
}

all_running() {
  local dir
  for dir in $(node_dirs); do running "$dir/data" || return 1; done
}

case "$command" in
  start)
    install_citus
    for dir in $(node_dirs); do
      # Citus needs itself preloaded, and prepared transactions for its two-phase commits.
      init_cluster "$dir/data" "shared_preload_libraries = 'citus'
max_prepared_transactions = 200
# Citus runs a maintenance worker per database on every node: the cluster suite's databases
# outgrow the default 8 background workers.
max_worker_processes = 64
citus.shard_count = ${TANHUI_CITUS_SHARD_COUNT:-8}"
      if ! running "$dir/data"; then
        start_server "$dir/data" "$dir/server.log" "$(node_port "$dir")" || { tail -n 20 "$dir/server.log" >&2; exit 1; }
      fi
    done
    [ -n "${TANHUI_CITUS_PORT:-}" ] || echo "$port" >"$port_file"
    setup_database tanhui
    echo "Citus '$name' running: $url (workers on ports ${worker_ports[*]})" >&2
    ;;
  stop)
    for dir in $(node_dirs); do stop_server "$dir/data"; done
    echo "Citus '$name' stopped" >&2
    ;;
  status)
    if all_running; then echo "running: $url"; else echo "stopped"; exit 3; fi
    ;;
  url)
    echo "$url"
    ;;
  create-database)
    # For the cluster test suite: a fresh database set up like `start`'s (`bare`: no schema).
    case "${2:-}" in (""|*[!a-z0-9_]*) echo "citus.sh: bad database name '${2:-}'" >&2; exit 2;; esac
    # One at a time per cluster: two databases set up at once update the same Citus catalogs
    # on the workers and one fails ("tuple concurrently updated").
    exec 9>"$cluster/ddl.lock"
    flock 9
    setup_database "$2" "${3:-full}"
    ;;
  drop-database)
    case "${2:-}" in (""|*[!a-z0-9_]*|tanhui|postgres) echo "citus.sh: bad database name '${2:-}'" >&2; exit 2;; esac
    exec 9>"$cluster/ddl.lock"
    flock 9
    drop_database "$2"
    ;;
  destroy)
    for dir in $(node_dirs); do stop_server "$dir/data" immediate; done
    rm -rf "$cluster"
    ;;
  install)
    install_citus
    ;;
  *)
    echo "usage: Scripts/citus.sh [--name NAME] start|stop|status|url|destroy|install|create-database DB [bare]|drop-database DB" >&2
    exit 2
    ;;
esac
