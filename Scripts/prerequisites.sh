#!/usr/bin/env bash
# Everything Tanhui's build and test suite need, installed in one place before anything runs,
# so that no test ever waits on (or fails because of) a package manager:
#   Debian packages: libpq-dev, pkg-config, zlib1g-dev (build); PostgreSQL 15 with its contrib
#   modules (the system of record, pg_stat_statements); curl; docker-compose (the offline compose
#   validator of Scripts/docker-check.sh);
#   Python tools at the exact versions of Scripts/requirements-test.txt (schemathesis for
#   contract fuzzing, the JSON Schema / OpenAPI validators).
# Installs what is missing when run as root (waiting for another install's apt lock instead of
# failing); otherwise says what to install. Idempotent and quiet when all is present.
#
#   Debian packages for the Citus build from the vendored source (Scripts/citus.sh, the cluster
#   suite): postgresql-server-dev-NN pinned to the installed server's exact version (so it never
#   upgrades the server under running clusters), libkrb5-dev, liblz4-dev, libzstd-dev, make, gcc;
#
#   Debian packages for the console's browser tests: chromium and chromium-driver (headless,
#   with fonts-noto-cjk for the Chinese labels,
#   driven by Selenium, which is pinned in Scripts/requirements-test.txt);
#
#   Scripts/prerequisites.sh [--build|--postgres|--citus|--browser]
#     --build: only what `swift build` needs (Scripts/start.sh); --postgres: the build packages
#     and PostgreSQL (Scripts/db.sh); --citus: PostgreSQL and the Citus build dependencies (Scripts/citus.sh);
#     --browser: PostgreSQL, Chromium with its WebDriver, and the pinned Python tools (Scripts/console-test.sh)
# Sourced or executed.
(
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scope="${1:-test}"
case "$scope" in
  (test|--build|--postgres|--citus|--browser) ;;
  (*) echo "usage: Scripts/prerequisites.sh [--build|--postgres|--citus|--browser]" >&2; exit 2 ;;
esac

# apt_install PACKAGE…: installs what is given (nothing when empty).
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "prerequisites: missing Debian packages; run: sudo apt-get install -y $*" >&2
    exit 1
  fi
  echo "prerequisites: installing $* from Debian…" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Another install may hold dpkg's lock: wait for it (up to 10 minutes) rather than fail.
  apt_options=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -qq)
  for attempt in 1 2 3; do
    apt-get "${apt_options[@]}" update >&2 && break
    [ "$attempt" = 3 ] && { echo "prerequisites: apt-get update failed" >&2; exit 1; }
    sleep 10
  done
  apt-get "${apt_options[@]}" install -y "$@" >&2
}

apt_packages=()
pkg-config --exists libpq 2>/dev/null || apt_packages+=(libpq-dev pkg-config)
[ -f /usr/include/zlib.h ] || apt_packages+=(zlib1g-dev)
command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
if [ "$scope" != --build ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_packages+=(postgresql postgresql-contrib)
fi
if [ "$scope" = test ]; then
  command -v docker-compose >/dev/null 2>&1 || apt_packages+=(docker-compose)
fi
if [ "$scope" = test ] || [ "$scope" = --browser ]; then
  { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || apt_packages+=(chromium chromium-driver)
  # The console's Chinese labels need a CJK font to render in the screenshots.
  [ -d /usr/share/fonts/opentype/noto ] || apt_packages+=(fonts-noto-cjk)
fi
apt_install "${apt_packages[@]}"

case "$scope" in (--build|--postgres) exit 0;; esac

if [ "$scope" != --browser ]; then
# The Citus build: the server headers of exactly the installed server (known only now).
major="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 | xargs dirname | xargs basename)"
version="$(dpkg-query -W -f '${Version}' "postgresql-$major" 2>/dev/null || true)"
citus_packages=()
{ [ -x "/usr/lib/postgresql/$major/bin/pg_config" ] && [ -d "/usr/include/postgresql/$major/server" ]; } ||
  citus_packages+=("postgresql-server-dev-$major${version:+=$version}")
[ -f /usr/include/gssapi/gssapi.h ] || citus_packages+=(libkrb5-dev)
[ -f /usr/include/lz4.h ] || citus_packages+=(liblz4-dev)
[ -f /usr/include/zstd.h ] || citus_packages+=(libzstd-dev)
{ command -v make >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1; } || citus_packages+=(make gcc)
apt_install "${citus_packages[@]}"

fi
[ "$scope" = --citus ] && exit 0

# Python tools, pinned: a new upstream release must not change what the suite checks.
requirements="$root/Scripts/requirements-test.txt"
missing="$(python3 - "$requirements" <<'PY'
import importlib.metadata as metadata, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        if metadata.version(name) != version:
            print(line)
    except metadata.PackageNotFoundError:
        print(line)
PY
)"
if [ -n "$missing" ]; then
  echo "prerequisites: installing from PyPI: $(echo $missing)" >&2
  python3 -m pip install -q --disable-pip-version-check -r "$requirements" >&2 || {
    echo "prerequisites: pip install -r Scripts/requirements-test.txt failed" >&2; exit 1; }
fi
command -v schemathesis >/dev/null 2>&1 || { echo "prerequisites: schemathesis is installed but not on PATH" >&2; exit 1; }
) || { status=$?; return "$status" 2>/dev/null || exit "$status"; }
