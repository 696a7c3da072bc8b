#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from Schema/openapi.yaml against a live
# `tanhui serve` on 127.0.0.1 and runs all of its checks: no 5xx, every response conforms,
# valid data accepted and invalid data rejected, unlisted methods answered 405, authentication
# not ignored.
# Bounded: a fixed seed, a fixed number of examples per operation, and a time limit.
#   Scripts/fuzz-api.sh [EXAMPLES]      (needs TANHUI_BIN and TANHUI_TEST_DATABASE_URL, as set by Scripts/test.sh)
# It refuses to run without a real operator key, partner key and device token. TANHUI_FUZZ_CREDENTIALS_ONLY=1
# stops after that check (for Scripts/check-selftest.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
examples="${1:-25}"
: "${TANHUI_BIN:?run through Scripts/test.sh, or set TANHUI_BIN}"
: "${TANHUI_TEST_DATABASE_URL:?run through Scripts/test.sh, or set TANHUI_TEST_DATABASE_URL}"

admin="${TANHUI_TEST_DATABASE_URL%/*}/postgres"
database="tanhui_fuzz"
url="${TANHUI_TEST_DATABASE_URL%/*}/$database"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"
export DATABASE_URL="$url"
export TANHUI_TOKEN_SECRET="$(head -c 32 /dev/urandom | base64)"
# Reports and partner receipts are signed with the checkpoint key; without one they would only
# ever answer 503.
export TANHUI_CHECKPOINT_KEY="$(head -c 32 /dev/urandom | base64)"
export TANHUI_LOG_LEVEL=error
"$TANHUI_BIN" migrate >/dev/null
"$TANHUI_BIN" rules publish --by fuzz Schema/rulesets/CN-GD.yaml >/dev/null
# POST …/rulesets publishes only under a direct-publish policy; the proposal routes work either way.
"$TANHUI_BIN" rules policy --province CN-GD --direct-publish --by fuzz >/dev/null
# Every governance role, so the fuzzer reaches each proposal operation past the role check.
operator_key="$("$TANHUI_BIN" operator create --province CN-GD --name fuzz --role author --role approver --role publisher 2>/dev/null | sed -n 's/^key //p')"
partner_key="$("$TANHUI_BIN" partner create --province CN-GD --name fuzz --scope redeem --scope feed 2>/dev/null | sed -n 's/^key //p')"
device_token="$("$TANHUI_BIN" token issue --citizen "$(cat /proc/sys/kernel/random/uuid)" --device fuzz --ttl 1h)"
# Without credentials every authenticated operation would only ever see 401s and "pass".
case "$operator_key" in (thk_?*) ;; (*) echo "fuzz-api: no operator key from \`tanhui operator create\` (got '${operator_key:0:12}')" >&2; exit 1;; esac
case "$partner_key" in (thp_?*) ;; (*) echo "fuzz-api: no partner key from \`tanhui partner create\` (got '${partner_key:0:12}')" >&2; exit 1;; esac
[ "$(printf '%s' "$device_token" | tr -cd . | wc -c)" = 2 ] || {
  echo "fuzz-api: no device token from \`tanhui token issue\` (got '${device_token:0:12}')" >&2; exit 1; }
[ -z "${TANHUI_FUZZ_CREDENTIALS_ONLY:-}" ] || { echo "fuzz-api: credentials ok"; exit 0; }

# Every operation must fall in exactly one of the runs below, or it would never be fuzzed.
python3 - Schema/openapi.yaml <<'PY'
import sys, yaml
runs = {"sync", "operator", "partner", "health"}
bad = [f"{method.upper()} {path}: tags {op.get('tags')}" for path, item in yaml.safe_load(open(sys.argv[1]))["paths"].items()
       for method, op in item.items() if isinstance(op, dict) and "responses" in op and len(runs & set(op.get("tags", []))) != 1]
if bad: sys.exit("fuzz-api: operations outside exactly one fuzz run (sync, operator, partner, health):\n  " + "\n  ".join(bad))
PY

command -v schemathesis >/dev/null 2>&1 || {
  echo "fuzz-api: schemathesis is not installed; run Scripts/prerequisites.sh" >&2; exit 1; }

log="$(mktemp)"
DATABASE_URL="${url/tanhui@/tanhui_service@}" "$TANHUI_BIN" serve --host 127.0.0.1 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "fuzz-api: server did not start" >&2; cat "$log" >&2; exit 1; }
base="http://127.0.0.1:$port"

run() {
  timeout 600 schemathesis --config-file Scripts/schemathesis.toml run Schema/openapi.yaml --url "$base" --seed 20261129 -n "$examples" \
    --checks all \
    --request-timeout 10 --no-color "$@"
}
# One run per credential, chosen by the operation's tag (every operation has exactly one of these).
run --include-tag sync -H "Authorization: Bearer $device_token"
run --include-tag operator -H "Authorization: Bearer $operator_key"
run --include-tag partner -H "Authorization: Bearer $partner_key"
run --include-tag health
echo "fuzz-api: ok"
