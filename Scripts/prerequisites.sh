#!/usr/bin/env bash
# Prerequisites on a fresh Debian machine with Swift: libpq headers, pkg-config, zlib
# headers to build; curl, the HTTP client the tests drive the real server with. Installs them
# with apt-get when run as root; otherwise says what to install. All of the project's apt
# installs go through tanhui_apt_install below.
# Sourced by Scripts/start.sh, Scripts/test.sh and Scripts/citus.sh.

# Installs Debian packages, waiting (up to 10 minutes) for another checkout's apt-get or dpkg
# rather than failing on its lock: several checkouts share one machine.
tanhui_apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "prerequisites: required: sudo apt-get install -y $*" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  (
    flock -w 600 9 || { echo "prerequisites: timed out waiting for /tmp/tanhui-apt.lock" >&2; exit 1; }
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 &&
      apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >&2
  ) 9>/tmp/tanhui-apt.lock
}

# The PostgreSQL major version of the newest installed server (empty when none is).
tanhui_pg_major() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then basename "$(dirname "$dir")"; fi
}

# What the Citus build from the vendored source needs (../shared/vendor/CITUS.md): the server
# headers of exactly the installed server's version — pinned, so installing them never
# upgrades the server package under running clusters — and the headers the server headers
# include (gssapi, lz4, zstd).
tanhui_citus_build_prerequisites() {
  local major version missing=()
  major="$(tanhui_pg_major)"
  if [ -z "$major" ]; then
    tanhui_apt_install postgresql libpq-dev pkg-config || return 1
    major="$(tanhui_pg_major)"
  fi
  version="$(dpkg-query -W -f '${Version}' "postgresql-$major" 2>/dev/null || true)"
  [ -x "/usr/lib/postgresql/$major/bin/pg_config" ] && [ -d "/usr/include/postgresql/$major/server" ] ||
    missing+=("postgresql-server-dev-$major${version:+=$version}")
  [ -f /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
  [ -f /usr/include/lz4.h ] || missing+=(liblz4-dev)
  [ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
  command -v make >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 || missing+=(build-essential)
  if [ ${#missing[@]} -gt 0 ]; then tanhui_apt_install "${missing[@]}"; fi
}

if ! pkg-config --exists libpq 2>/dev/null || [ ! -f /usr/include/zlib.h ] || ! command -v curl >/dev/null 2>&1; then
  tanhui_apt_install libpq-dev pkg-config zlib1g-dev curl || exit 1
fi
