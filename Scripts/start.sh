#!/usr/bin/env bash
# Runs Tanhui locally: provisions the dev database, builds, migrates, publishes the sample
# province rule sets, and serves on 127.0.0.1 in the foreground (Ctrl-C stops it cleanly).
#   Scripts/start.sh [--port P]      (default 8080; 0 picks a free port)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port=8080
if [ "${1:-}" = "--port" ]; then port="$2"; fi

Scripts/prerequisites.sh --build

Scripts/db.sh start
export DATABASE_URL="${DATABASE_URL:-$(Scripts/db.sh url)}"

# Local secrets, generated once and kept in the git-ignored .tanhui/ folder.
mkdir -p .tanhui
if [ -z "${TANHUI_TOKEN_SECRET:-}" ]; then
  [ -f .tanhui/token-secret ] || head -c 32 /dev/urandom | base64 > .tanhui/token-secret
  export TANHUI_TOKEN_SECRET="$(cat .tanhui/token-secret)"
fi
if [ -z "${TANHUI_CHECKPOINT_KEY:-}" ]; then
  [ -f .tanhui/checkpoint-key ] || head -c 32 /dev/urandom | base64 > .tanhui/checkpoint-key
  export TANHUI_CHECKPOINT_KEY="$(cat .tanhui/checkpoint-key)"
fi
chmod 600 .tanhui/token-secret .tanhui/checkpoint-key 2>/dev/null || true

swift build
bin="$(swift build --show-bin-path)/tanhui"
"$bin" migrate

# Sample rule sets: publish each province's file unless that version is already published.
for file in Schema/rulesets/*.yaml; do
  [ -e "$file" ] || continue
  "$bin" rules publish --if-absent --by "Scripts/start.sh" "$file"
done

# The server runs as the least-privileged role the migrations create: it can append to
# the ledger but never rewrite it.
exec env DATABASE_URL="${TANHUI_SERVICE_DATABASE_URL:-${DATABASE_URL/tanhui@/tanhui_service@}}" \
  "$bin" serve --host 127.0.0.1 --port "$port"
