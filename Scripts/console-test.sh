#!/usr/bin/env bash
# Browser tests of the operator console: a real headless Chromium (Debian's chromium and
# chromium-driver, driven by Selenium from Tests/Browser/console_test.py) against a live
# `tanhui serve` on 127.0.0.1 with its own database. Screenshots of every page are written to
# .tanhui/console-screenshots/ (test artefacts, not committed).
#   Scripts/console-test.sh      (needs TANHUI_BIN and TANHUI_TEST_DATABASE_URL, as set by Scripts/test.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${TANHUI_BIN:?run through Scripts/test.sh, or set TANHUI_BIN}"
: "${TANHUI_TEST_DATABASE_URL:?run through Scripts/test.sh, or set TANHUI_TEST_DATABASE_URL}"
command -v chromedriver >/dev/null 2>&1 || { echo "console-test: chromedriver missing; run Scripts/prerequisites.sh --browser" >&2; exit 1; }

admin="${TANHUI_TEST_DATABASE_URL%/*}/postgres"
database="tanhui_console"
url="${TANHUI_TEST_DATABASE_URL%/*}/$database"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
export DATABASE_URL="$url"
export TANHUI_TOKEN_SECRET="$(head -c 32 /dev/urandom | base64)"
export TANHUI_CHECKPOINT_KEY="$(head -c 32 /dev/urandom | base64)"
export TANHUI_SEAL_INTERVAL_MS=200
export TANHUI_LOG_LEVEL=error
"$TANHUI_BIN" migrate >/dev/null
"$TANHUI_BIN" rules publish --by console-test Schema/rulesets/CN-GD.yaml >/dev/null
# CN-GD publishes directly from the editor (POST …/rulesets); CN-SH is governed: the console's
# proposal flow runs there with an author, two approvers and a publisher (no notice period).
"$TANHUI_BIN" rules policy --province CN-GD --direct-publish >/dev/null
"$TANHUI_BIN" rules publish --by console-test Schema/rulesets/CN-SH.yaml >/dev/null
"$TANHUI_BIN" rules policy --province CN-SH --required-approvals 2 --notice-days 0 >/dev/null
governed_keys="$(mktemp)"
for role in author approver approver publisher; do
  key="$("$TANHUI_BIN" operator create --province CN-SH --name "console $role $RANDOM" --role "$role" 2>/dev/null | sed -n 's/^key //p')"
  case "$key" in (thk_?*) ;; (*) echo "console-test: no $role key" >&2; exit 1;; esac
  printf '%s %s\n' "$role" "$key" >>"$governed_keys"
done
operator_key="$("$TANHUI_BIN" operator create --province CN-GD --name console 2>/dev/null | sed -n 's/^key //p')"
case "$operator_key" in (thk_?*) ;; (*) echo "console-test: no operator key" >&2; exit 1;; esac
tokens="$(mktemp)"
for i in $(seq 0 11); do
  citizen="$(cat /proc/sys/kernel/random/uuid)"
  printf '%s %s\n' "$citizen" "$("$TANHUI_BIN" token issue --citizen "$citizen" --device "console-$i" --ttl 1h)" >>"$tokens"
done

log="$(mktemp)"
DATABASE_URL="${url/tanhui@/tanhui_service@}" "$TANHUI_BIN" serve --host 127.0.0.1 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log" "$tokens" "$governed_keys"' EXIT
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "console-test: server did not start" >&2; cat "$log" >&2; exit 1; }

mkdir -p .tanhui/console-screenshots
timeout 600 python3 Tests/Browser/console_test.py --base "http://127.0.0.1:$port" --key "$operator_key" --tokens "$tokens" \
  --governed-keys "$governed_keys" --rule-set Schema/rulesets/CN-GD.yaml --screenshots .tanhui/console-screenshots "$@"
