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

source "$root/Scripts/pg-lib.sh"
# 20000–39999, from the checkout's path and the cluster's name (TANHUI_DB_NAMESPACE too).
port="$(cluster_port "$command" "$port_file" "${TANHUI_DB_PORT:-}" "$root:${TANHUI_DB_NAMESPACE:-}$name" 20000 10000)"
url="postgresql://tanhui@127.0.0.1:$port/tanhui"

bindir="$(find_bindir)"
if [ -z "$bindir" ] && [ "$command" = start ]; then
  install_postgres
  bindir="$(find_bindir)"
fi

case "$command" in
  start)
    init_cluster "$data"
    if ! running "$data"; then
      start_server "$data" "$log" "$port" || { tail -n 20 "$log" >&2; exit 1; }
    fi
    # The port the server really listens on (it may have been started before the port file existed).
    port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || echo "$port")"
    url="postgresql://tanhui@127.0.0.1:$port/tanhui"
    [ -n "${TANHUI_DB_PORT:-}" ] || echo "$port" >"$port_file"
    ensure_database "postgresql://tanhui@127.0.0.1:$port" tanhui
    echo "PostgreSQL '$name' running: $url" >&2
    ;;
  stop)
    stop_server "$data"
    echo "PostgreSQL '$name' stopped" >&2
    ;;
  kill)
    # For fault tests: SIGKILL the postmaster, as a crash would.
    if [ -f "$data/postmaster.pid" ]; then kill -9 "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null || true; fi
    ;;
  status)
    if running "$data"; then echo "running: $url"; else echo "stopped"; exit 3; fi
    ;;
  url)
    echo "$url"
    ;;
  destroy)
    stop_server "$data" immediate
    rm -rf "$cluster"
    ;;
  *)
    echo "usage: Scripts/db.sh [--name NAME] start|stop|status|url|kill|destroy" >&2
    exit 2
    ;;
esac
