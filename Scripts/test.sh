#!/usr/bin/env bash
# Runs the whole test suite against a PostgreSQL cluster of its own (never start.sh's), then
# the cluster suite (the scale-out tests) against a Citus coordinator and two workers of its
# own (Scripts/citus.sh, same name).
#   Scripts/test.sh [extra swift test arguments, e.g. --filter RuleSet]
# Exit code is the suite's. TANHUI_TEST_DB_NAME (default `test`) and TANHUI_TEST_DB_PORT
# (default: db.sh's port for that name) let a second checkout run its own cluster alongside.
# TANHUI_TEST_SUITES: `single`, `cluster` or `single cluster` (the default of a run without
# arguments; a run with arguments defaults to `single`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Everything the suite needs is installed here, before any test starts, or not at all.
Scripts/prerequisites.sh
if [ $# -eq 0 ]; then suites="${TANHUI_TEST_SUITES:-single cluster}"; else suites="${TANHUI_TEST_SUITES:-single}"; fi
# The Citus build (cached per machine) before any test starts, too.
case " $suites " in (*" cluster "*) Scripts/citus.sh install ;; esac

test_db_name="${TANHUI_TEST_DB_NAME:-test}"
# Clusters the tests start themselves (fault tests) get ports derived from this namespace too.
if [ "$test_db_name" != test ]; then export TANHUI_DB_NAMESPACE="$test_db_name"; fi
TANHUI_DB_PORT="${TANHUI_TEST_DB_PORT:-}" Scripts/db.sh --name "$test_db_name" start
export TANHUI_TEST_DATABASE_URL="$(TANHUI_DB_PORT="${TANHUI_TEST_DB_PORT:-}" Scripts/db.sh --name "$test_db_name" url)"
export TANHUI_REPO_ROOT="$root"

# Generated sources must match their inputs: a stale file fails the run (nothing is repaired).
Scripts/gen-migrations.sh --check
Scripts/gen-console.sh --check

# Rule-set samples against the published JSON Schema (editors use the same file).
python3 Scripts/check-ruleset-schema.py
# The OpenAPI document is valid, and (after the suite) every captured response conforms to it.
python3 Scripts/check-openapi.py
export TANHUI_CONTRACT_DIR="$(mktemp -d)"
trap 'rm -rf "$TANHUI_CONTRACT_DIR"' EXIT

# One code style: `swift format` with the checked-in .swift-format; drift fails the run.
swift format lint --strict --recursive --parallel Sources Tests Package.swift
# Every import declared (our targets by SwiftPM's check, products by check-imports.py).
python3 Scripts/check-imports.py
flock /tmp/tanhui-swift-build.lock nice -n 5 swift build --build-tests --explicit-target-dependency-import-check error
export TANHUI_BIN="$(swift build --show-bin-path)/tanhui"

# Citus-readiness of the schema the binary migrates (fresh database each run).
citus_url="${TANHUI_TEST_DATABASE_URL%/*}/tanhui_citus_check"
PGOPTIONS='-c client_min_messages=warning' psql -X -q "${TANHUI_TEST_DATABASE_URL%/*}/postgres" \
  -c "DROP DATABASE IF EXISTS tanhui_citus_check" -c "CREATE DATABASE tanhui_citus_check"
DATABASE_URL="$citus_url" "$TANHUI_BIN" migrate >/dev/null
python3 Scripts/citus-check.py "$citus_url"
# The SQL in the sources against the rules the real engine taught (routing, functions on
# shards, COPY-path inserts, volatile functions in modifications).
python3 Scripts/citus-check.py --queries Sources
# Docker files, statically (no engine here): compose config, COPY sources, commands vs the CLI.
Scripts/docker-check.sh
# Each static check against fixtures that must make it fail (so none can silently stop checking).
Scripts/check-selftest.sh
# The benchmark harness in its tiny smoke mode (debug binaries, no timing asserted), so it never rots.
Scripts/bench.sh --smoke

single_ran=false
case " $suites " in
  *" single "*)
    single_ran=true
    suite=0
    swift test --skip-build --skip CitusClusterTests "$@" || suite=$?
    # Every response the suite captured must conform. The whole suite always captures some (a run
    # that captured none means the capture broke, and fails); a filtered run may legitimately
    # capture none, and says so.
    if [ $# -eq 0 ] || [ -n "$(ls -A "$TANHUI_CONTRACT_DIR")" ]; then
      python3 Scripts/check-openapi.py "$TANHUI_CONTRACT_DIR" || suite=1
    else
      echo "test.sh: note: this filtered run captured no HTTP responses; nothing to check against the OpenAPI document" >&2
    fi
    [ "$suite" -eq 0 ] || exit "$suite"
    ;;
esac

case " $suites " in
  *" cluster "*)
    # The cluster suite: the tests that matter for scale-out, each on a fresh database that
    # Scripts/citus.sh migrates and distributes over the coordinator and two workers.
    Scripts/citus.sh --name "$test_db_name" start
    export TANHUI_CITUS_DATABASE_URL="$(Scripts/citus.sh --name "$test_db_name" url)" TANHUI_CITUS_NAME="$test_db_name"
    cluster_tests=(
      'CitusClusterTests'
      'LedgerTests'
      'SyncHTTPTests/(outcomes|twoDevicesRace|pullUnderConcurrentWriters)\('
      'PushPathTests/(multiProvinceBatch|publicationDoesNotRaceBatches|idsScopedPerProvince)\('
      'CrossProcessRaceTests/uniqueViolationsDecide\('
      'ScaleOutTests'
      'OperatorHTTPTests'
      'AuditTests/(cleanLedger|provincesAndJobs|auditWhileServing)\('
      'ServeAndMigrateTests/(serviceRoleDoesItsJob|backgroundSealer)\('
      'PartnerFeedTests'
      'SelfReportedTermsHTTPTests'
    )
    filters=()
    for test in "${cluster_tests[@]}"; do filters+=(--filter "$test"); done
    swift test --skip-build "${filters[@]}" || exit $?
    unset TANHUI_CITUS_DATABASE_URL TANHUI_CITUS_NAME
    ;;
esac

if [ $# -eq 0 ] && $single_ran; then
  # Contract fuzzing against a live server, all checks (bounded: fixed seed, 100 examples per operation).
  Scripts/fuzz-api.sh 100
  # The operator console in a real headless Chromium against a live server (screenshots in .tanhui/console-screenshots/).
  Scripts/console-test.sh
fi
