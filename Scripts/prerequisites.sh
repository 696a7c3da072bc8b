#!/usr/bin/env bash
# Prerequisites on a fresh Debian machine with Swift: libpq headers, pkg-config, zlib
# headers to build; curl, the HTTP client the tests drive the real server with. Installs them with apt-get when run as root; otherwise says what to install.
# Sourced by Scripts/start.sh and Scripts/test.sh.
if ! pkg-config --exists libpq 2>/dev/null || [ ! -f /usr/include/zlib.h ] || ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq libpq-dev pkg-config zlib1g-dev curl
  else
    echo "libpq-dev, pkg-config, zlib1g-dev and curl are required (sudo apt-get install -y libpq-dev pkg-config zlib1g-dev curl)" >&2
    exit 1
  fi
fi
