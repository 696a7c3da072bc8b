#!/usr/bin/env bash
# Per-batch cost on a Citus cluster next to one PostgreSQL, in the same run (issue 16).
#
#   Scripts/bench-cluster.sh [--name NAME] [--smoke]
#
# Release binaries in .build-bench-NAME (built under the shared build lock; the build is not
# timed). Two fresh databases: one on Scripts/db.sh --name NAME (single node), one made by
# Scripts/citus.sh --name NAME create-database (coordinator + 2 workers, migrated and
# distributed). On each: `tanhui serve` on 127.0.0.1, `tanhui-load backlog` (100-event batches)
# and `tanhui-load daily` (1–5 events a push), the same seeds and sizes, alternating single and
# cluster so both see the same machine load. Prints one JSON line per run and a Markdown table
# of medians; writes nothing else. Everything is loopback; every load run is time-bounded.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
name=bench-cluster
if [ "${1:-}" = "--name" ]; then name="$2"; shift 2; fi
RUNS=3; CITIZENS=200; DAILY=4000; SECONDS_MAX=60
if [ "${1:-}" = "--smoke" ]; then RUNS=1; CITIZENS=8; DAILY=100; fi

scratch=".build-bench-$name"
flock /tmp/tanhui-swift-build.lock nice -n 10 swift build -c release --scratch-path "$scratch" --product tanhui >&2
flock /tmp/tanhui-swift-build.lock nice -n 10 swift build -c release --scratch-path "$scratch" --product tanhui-load >&2
bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)"
export TANHUI_BIN="$bin/tanhui"
LOAD="$bin/tanhui-load"

Scripts/db.sh --name "$name" start >&2
Scripts/citus.sh --name "$name" start >&2
single_server="$(Scripts/db.sh --name "$name" url)"; single_server="${single_server%/*}"
cluster_server="$(Scripts/citus.sh --name "$name" url)"; cluster_server="${cluster_server%/*}"
db="bench_$(date +%Y%m%d_%H%M%S)_$$"
psql -X -q "$single_server/postgres" -c "CREATE DATABASE $db" >&2
DATABASE_URL="$single_server/$db" "$TANHUI_BIN" migrate >&2
Scripts/citus.sh --name "$name" create-database "$db" >&2
export TANHUI_TOKEN_SECRET="$(head -c 32 /dev/urandom | base64 -w0)" TANHUI_LOG_LEVEL=warning
for url in "$single_server/$db" "$cluster_server/$db"; do
  DATABASE_URL="$url" "$TANHUI_BIN" rules publish --if-absent Schema/rulesets/CN-GD.yaml >&2
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -X -q "$single_server/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  Scripts/citus.sh --name "$name" drop-database "$db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# serve LABEL URL: starts a server (in this shell, so `cleanup` can stop it); sets `served`
# to its base URL.
serve() {
  DATABASE_URL="$2" "$TANHUI_BIN" serve --host 127.0.0.1 --port 0 >"$work/$1.log" 2>&1 &
  local pid=$! port=""
  pids+=("$pid")
  for _ in $(seq 1 2000); do
    port="$(sed -n 's#^tanhui listening on http://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$work/$1.log" | head -n 1)"
    if [ -n "$port" ] && curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; then served="http://127.0.0.1:$port"; return; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  cat "$work/$1.log" >&2; echo "bench-cluster: $1 server not ready" >&2; exit 1
}
serve single "$single_server/$db"; single="$served"
serve cluster "$cluster_server/$db"; cluster="$served"

results="$work/results.jsonl"
for r in $(seq 1 "$RUNS"); do
  for target in single cluster; do
    base="$single"; [ "$target" = cluster ] && base="$cluster"
    out="$("$LOAD" backlog --url "$base" --concurrency 16 --citizens "$CITIZENS" --batch 100 --seed $((1000 * r + ${#target})) --max-seconds "$SECONDS_MAX")"
    echo "{\"target\":\"$target\",\"load\":\"backlog\",\"run\":$r,\"result\":$out}" | tee -a "$results"
    out="$("$LOAD" daily --url "$base" --concurrency 64 --requests "$DAILY" --seed $((2000 * r + ${#target})) --max-seconds "$SECONDS_MAX")"
    echo "{\"target\":\"$target\",\"load\":\"daily\",\"run\":$r,\"result\":$out}" | tee -a "$results"
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print()
print("| load | target | accepted events/s | events sent/s | pushes/s | p50 ms | p99 ms | failures | runs |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
medians = {}
for load in ("backlog", "daily"):
    for target in ("single", "cluster"):
        rs = [r["result"] for r in rows if r["load"] == load and r["target"] == target]
        if not rs:
            continue
        med = lambda key: statistics.median([x.get(key, 0) for x in rs])
        medians[(load, target)] = (med("accepted_per_s"), med("requests_per_s"))
        print(f"| {load} | {target} | {med('accepted_per_s'):,.0f} | {med('events_per_s'):,.0f} | {med('requests_per_s'):,.1f} | "
              f"{med('p50_ms'):.1f} | {med('p99_ms'):.1f} | {sum(x.get('failures', 0) for x in rs)} | {len(rs)} |")
print()
for load in ("backlog", "daily"):
    single, cluster = medians.get((load, "single")), medians.get((load, "cluster"))
    if single and cluster and single[0] and single[1]:
        print(f"- {load}: cluster/single = {cluster[0] / single[0]:.2f} (accepted events/s), "
              f"{cluster[1] / single[1]:.2f} (pushes/s); per push {1000 / single[1] * 16 if load == 'backlog' else 1000 / single[1] * 64:.1f} ms "
              f"single vs {1000 / cluster[1] * (16 if load == 'backlog' else 64):.1f} ms cluster (connections × 1/throughput)")
PY
