#!/usr/bin/env bash
# Negative self-tests of the static checks: each check is run on a fixture that must make it
# fail (and, where cheap, on a positive control that must pass), so a check that silently
# stopped checking fails here. Run by Scripts/test.sh after the build.
#   Scripts/check-selftest.sh      (needs TANHUI_BIN and TANHUI_TEST_DATABASE_URL, as test.sh sets)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
: "${TANHUI_BIN:?run through Scripts/test.sh, or set TANHUI_BIN}"
: "${TANHUI_TEST_DATABASE_URL:?run through Scripts/test.sh, or set TANHUI_TEST_DATABASE_URL}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
log="$work/log"

# expect STATUS DESCRIPTION COMMAND…: the command must exit with STATUS ("nonzero" = any failure).
expect() {
  local want="$1" what="$2"; shift 2
  local got=0
  "$@" >"$log" 2>&1 || got=$?
  if { [ "$want" = nonzero ] && [ "$got" -ne 0 ]; } || [ "$want" = "$got" ]; then
    echo "check-selftest: ok: $what (exit $got)"
  else
    echo "check-selftest: FAIL: $what: exit $got, expected $want" >&2
    sed 's/^/    /' "$log" >&2
    failures=$((failures + 1))
  fi
}

# ---------------------------------------------------------------- check-openapi.py
captures="$work/captures"
mkdir -p "$captures/empty" "$captures/good" "$captures/bad-body" "$captures/bad-status"
cat >"$captures/good/healthz.json" <<'JSON'
{"method": "GET", "path": "/healthz", "status": 200, "content_type": "application/json", "body": {"status": "ok"}}
JSON
cp "$captures/good/healthz.json" "$captures/bad-body/"
cat >"$captures/bad-body/push.json" <<'JSON'
{"method": "POST", "path": "/v1/sync/push", "status": 200, "content_type": "application/json",
 "body": {"server_time": "2027-03-01T08:00:05Z", "results": [{"id": "x", "status": "awarded"}]}}
JSON
cat >"$captures/bad-status/teapot.json" <<'JSON'
{"method": "GET", "path": "/healthz", "status": 418, "content_type": "application/json", "body": {"status": "ok"}}
JSON
expect 0 "check-openapi accepts a conforming capture" python3 Scripts/check-openapi.py "$captures/good"
expect 1 "check-openapi fails when nothing was captured" python3 Scripts/check-openapi.py "$captures/empty"
expect 1 "check-openapi fails on a body that violates the schema" python3 Scripts/check-openapi.py "$captures/bad-body"
expect 1 "check-openapi fails on an undocumented status" python3 Scripts/check-openapi.py "$captures/bad-status"

# ---------------------------------------------------------------- docker-check.sh
# A copy of the tree docker-check reads (Docker/ copied, build inputs linked), then broken.
make_docker_tree() {
  local tree="$1"
  mkdir -p "$tree"
  cp -r Docker "$tree/Docker"
  for input in Package.swift Sources Tests Schema Scripts; do ln -s "$root/$input" "$tree/$input"; done
}
make_docker_tree "$work/docker-good"
expect 0 "docker-check passes on an unchanged copy" env TANHUI_DOCKER_CHECK_ROOT="$work/docker-good" Scripts/docker-check.sh
make_docker_tree "$work/docker-from"
sed -i 's#^COPY --from=build /staging/tanhui /usr/local/bin/tanhui#COPY --from=build /staging/tanhui-missing /usr/local/bin/tanhui#' "$work/docker-from/Docker/Dockerfile"
grep -q 'tanhui-missing' "$work/docker-from/Docker/Dockerfile" || { echo "check-selftest: fixture edit did not apply (Dockerfile changed?)" >&2; exit 1; }
expect 1 "docker-check fails on a COPY --from source the stage never writes" env TANHUI_DOCKER_CHECK_ROOT="$work/docker-from" Scripts/docker-check.sh
make_docker_tree "$work/docker-stage"
sed -i 's#^COPY --from=build /staging/tanhui #COPY --from=builder /staging/tanhui #' "$work/docker-stage/Docker/Dockerfile"
expect 1 "docker-check fails on a COPY --from of an unknown stage" env TANHUI_DOCKER_CHECK_ROOT="$work/docker-stage" Scripts/docker-check.sh
make_docker_tree "$work/docker-source"
sed -i 's#^COPY Schema/rulesets /app/rulesets#COPY Schema/no-such-dir /app/rulesets#' "$work/docker-source/Docker/Dockerfile"
expect 1 "docker-check fails on a missing COPY source" env TANHUI_DOCKER_CHECK_ROOT="$work/docker-source" Scripts/docker-check.sh

# ---------------------------------------------------------------- fuzz-api.sh credentials
# A tanhui that does everything but prints no operator key (or no token).
fake_tanhui() {
  local path="$1" key="$2" token="$3"
  cat >"$path" <<SH
#!/usr/bin/env bash
case "\$1 \${2:-}" in
  "operator create") [ -n "$key" ] && echo "key $key"; exit 0 ;;
  "token issue") echo "$token"; exit 0 ;;
  *) exit 0 ;;
esac
SH
  chmod +x "$path"
}
fake_tanhui "$work/tanhui-nokey" "" "aaa.bbb.ccc"
expect 1 "fuzz-api refuses an empty operator key" env TANHUI_BIN="$work/tanhui-nokey" TANHUI_FUZZ_CREDENTIALS_ONLY=1 Scripts/fuzz-api.sh 1
fake_tanhui "$work/tanhui-notoken" "thk_selftest" ""
expect 1 "fuzz-api refuses an empty device token" env TANHUI_BIN="$work/tanhui-notoken" TANHUI_FUZZ_CREDENTIALS_ONLY=1 Scripts/fuzz-api.sh 1
expect 0 "fuzz-api gets real credentials from the real binary" env TANHUI_FUZZ_CREDENTIALS_ONLY=1 Scripts/fuzz-api.sh 1

# ---------------------------------------------------------------- check-imports.py
imports_tree="$work/imports"
mkdir -p "$imports_tree/Sources/Pure"
cat >"$imports_tree/package.json" <<'JSON'
{"targets": [{"name": "Pure", "type": "regular", "dependencies": [{"byName": ["Declared", null]}]}]}
JSON
printf 'import Foundation\npackage import Declared\n' >"$imports_tree/Sources/Pure/Good.swift"
expect 0 "check-imports accepts declared and toolchain imports" python3 Scripts/check-imports.py "$imports_tree" "$imports_tree/package.json"
printf '@preconcurrency import Undeclared\n' >"$imports_tree/Sources/Pure/Bad.swift"
expect 1 "check-imports fails on an undeclared import" python3 Scripts/check-imports.py "$imports_tree" "$imports_tree/package.json"

# ---------------------------------------------------------------- swift format lint
format_tree="$work/format"
mkdir -p "$format_tree"
cp .swift-format "$format_tree/"
printf 'let gramsCO2e = 1\n' >"$format_tree/Good.swift"
expect 0 "swift format lint accepts a formatted file" swift format lint --strict --configuration .swift-format "$format_tree/Good.swift"
printf 'let   gramsCO2e=1\n' >"$format_tree/Bad.swift"
expect 1 "swift format lint fails on a misformatted line" swift format lint --strict --configuration .swift-format "$format_tree/Bad.swift"

# ---------------------------------------------------------------- gen-migrations.sh --check
# A copy of the generator, the migrations and the committed file; then one migration edited.
gen_tree="$work/gen"
mkdir -p "$gen_tree/Scripts" "$gen_tree/Sources/TanhuiService"
cp Scripts/gen-migrations.sh "$gen_tree/Scripts/"
cp -r Schema "$gen_tree/Schema"
cp -r Sources/TanhuiService/Generated "$gen_tree/Sources/TanhuiService/Generated"
expect 0 "gen-migrations --check passes on the committed file" "$gen_tree/Scripts/gen-migrations.sh" --check
first_migration="$(ls "$gen_tree"/Schema/migrations/*.sql | head -n 1)"
echo "-- an edit nobody regenerated" >>"$first_migration"
expect 1 "gen-migrations --check fails on a stale generated file" "$gen_tree/Scripts/gen-migrations.sh" --check
cmp -s Sources/TanhuiService/Generated/SchemaMigrations+Files.swift \
  "$gen_tree/Sources/TanhuiService/Generated/SchemaMigrations+Files.swift" || {
  echo "check-selftest: FAIL: gen-migrations --check modified the generated file" >&2; failures=$((failures + 1)); }

# ---------------------------------------------------------------- citus-check.py
admin="${TANHUI_TEST_DATABASE_URL%/*}/postgres"
citus_bad="${TANHUI_TEST_DATABASE_URL%/*}/tanhui_citus_selftest"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$admin" \
  -c "DROP DATABASE IF EXISTS tanhui_citus_selftest WITH (FORCE)" -c "CREATE DATABASE tanhui_citus_selftest"
DATABASE_URL="$citus_bad" "$TANHUI_BIN" migrate >/dev/null
expect 0 "citus-check passes on the migrated schema" python3 Scripts/citus-check.py "$citus_bad"
# The layout first shipped (rule_sets a reference table, which ledger_transactions references):
# the real engine failed on it, so the check must too. Likewise a referenced table distributed
# after the table that references it.
sed -e "/create_distributed_table('rule_sets'/d" \
    -e "s/^SELECT create_reference_table('operators');/SELECT create_reference_table('rule_sets');\n&/" \
    Schema/citus/distribute.sql >"$work/distribute-reference-rule-sets.sql"
expect 1 "citus-check fails on a foreign key from a distributed table to a reference table" \
  python3 Scripts/citus-check.py "$citus_bad" --distribute-sql "$work/distribute-reference-rule-sets.sql"
awk "/create_distributed_table\\('rule_sets'/ { held = \$0; next } { print } /create_distributed_table\\('ledger_transactions'/ { print held }" \
  Schema/citus/distribute.sql >"$work/distribute-referenced-later.sql"
expect 1 "citus-check fails when a referenced table is distributed after its referencing table" \
  python3 Scripts/citus-check.py "$citus_bad" --distribute-sql "$work/distribute-referenced-later.sql"
# A unique index without the distribution column cannot be enforced per shard.
psql -X -q "$citus_bad" -c "CREATE UNIQUE INDEX selftest_events_id_unique ON events (event_id)"
expect 1 "citus-check fails on a unique index without province" python3 Scripts/citus-check.py "$citus_bad"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "$admin" -c "DROP DATABASE IF EXISTS tanhui_citus_selftest WITH (FORCE)"
# --queries: a lookup by id alone spans every shard; one fixed to a province does not.
mkdir -p "$work/queries-bad" "$work/queries-good"
cat >"$work/queries-bad/Lookup.swift" <<'SWIFT'
let sql: PostgresQuery = """
    SELECT e.status, t.points FROM events e JOIN ledger_transactions t ON t.province = e.province AND t.event_id = e.event_id
    WHERE e.event_id = \(id)
    """
SWIFT
cat >"$work/queries-good/Lookup.swift" <<'SWIFT'
let sql: PostgresQuery = """
    SELECT e.status, t.points FROM events e JOIN ledger_transactions t ON t.province = e.province AND t.event_id = e.event_id
    WHERE e.province = \(province) AND e.event_id = \(id)
    """
let across: PostgresQuery = "SELECT province FROM events WHERE event_id = \(id) -- citus: multi-shard (ids are checked across provinces)"
SWIFT
# The publication check as first written: the function reading events ran on a shard on Citus.
mkdir -p "$work/queries-function"
cat >"$work/queries-function/Publish.swift" <<'SWIFT'
let row = try connection.query("""
    SELECT (SELECT max(version) FROM rule_sets WHERE province = \(province)),
           tanhui_province_judged_through(\(province))
    """)
SWIFT
expect 1 "citus-check --queries fails on a routed statement calling a function that reads a distributed table" \
  python3 Scripts/citus-check.py --queries "$work/queries-function"
# The operator revocation as first written: Citus refused now() inside COALESCE of an UPDATE.
mkdir -p "$work/queries-volatile"
cat >"$work/queries-volatile/Revoke.swift" <<'SWIFT'
try connection.query("""
    UPDATE operators SET revoked_at = coalesce(revoked_at, now()) WHERE id = \(id)
    RETURNING id
    """)
SWIFT
expect 1 "citus-check --queries fails on now() inside COALESCE of an UPDATE of a Citus table" \
  python3 Scripts/citus-check.py --queries "$work/queries-volatile"
# The events insert as first written: Citus reported the race loser's unique violation as XX000.
mkdir -p "$work/queries-copy"
cat >"$work/queries-copy/Insert.swift" <<'SWIFT'
let insert: PostgresQuery = """
    INSERT INTO events (province, event_id) SELECT province, event_id FROM unnest(\(provinces)::text[], \(ids)::uuid[]) AS r(province, event_id)
    """
SWIFT
expect 1 "citus-check --queries fails on an INSERT … SELECT into a distributed table without RETURNING" \
  python3 Scripts/citus-check.py --queries "$work/queries-copy"
expect 1 "citus-check --queries fails on a lookup by id without province" python3 Scripts/citus-check.py --queries "$work/queries-bad"
expect 0 "citus-check --queries passes a lookup fixed to a province" python3 Scripts/citus-check.py --queries "$work/queries-good"

if [ "$failures" -gt 0 ]; then
  echo "check-selftest: $failures self-test(s) failed" >&2
  exit 1
fi
echo "check-selftest: ok"
