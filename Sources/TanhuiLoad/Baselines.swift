import ArgumentParser
import Foundation
import Histogram
import Synchronization
import TanhuiCore
import TanhuiPostgres

/// The bare table baselines write to: the `events` table's columns, NOT NULLs and CHECKs,
/// and its primary key only (no secondary indexes, no triggers).
enum BareTable {
    static let name = "bench_bare_events"
    static let columns = [
        "province", "event_id", "citizen_id", "device_id", "kind", "occurred_at", "ended_at", "device_occurred_at", "device_ended_at",
        "clock_offset_ms", "mode", "material", "distance_m", "weight_g", "unit_count", "consumption_wh", "baseline_wh", "days",
        "evidence_source", "evidence_ref", "content_sha256", "occupies_interval", "received_at", "status", "code", "message",
    ]

    static func reset(_ connection: PostgresConnection) throws {
        try connection.executeTrustedScript(
            """
            DROP TABLE IF EXISTS \(name);
            CREATE TABLE \(name) (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
            ALTER TABLE \(name) ADD PRIMARY KEY (province, event_id);
            CHECKPOINT;
            """)
    }

    /// Rows shaped like the service's: same mix of kinds, evidence on trips and rides.
    static func rows(_ count: Int, seed: Int) -> [[String?]] {
        let now = Date()
        var rng = SplitMix64(workloadSeed: UInt64(seed))
        var rows: [[String?]] = []
        rows.reserveCapacity(count)
        let received = Workload.iso(now)
        for i in 0..<count {
            let citizen = Workload.citizen(seed: seed, index: i / 100).uuidString.lowercased()
            let event = Workload.event(
                kind: Workload.kind(rng.below(20)), start: now.addingTimeInterval(-Double(i % 100) * 6000 - 3600), slot: 6000,
                tag: "\(seed)-\(i)", rng: &rng)
            var data: [String: String] = [:]
            for (key, value) in event.data { data[key] = value.replacingOccurrences(of: "\"", with: "") }
            let occurred = Workload.iso(event.start)
            let ended = event.end.map(Workload.iso)
            var hash = ""
            for _ in 0..<4 { hash += String(format: "%016llx", rng.next()) }
            rows.append([
                Workload.province, event.id.uuidString.lowercased(), citizen, "phone", event.kind, occurred, ended, occurred, ended,
                "0", data["mode"], data["material"], data["distance_m"], data["weight_g"], nil, data["consumption_wh"], data["baseline_wh"],
                data["days"],
                event.evidence?.source, event.evidence?.ref, hash, event.end == nil ? "f" : "t", received, "accepted", nil, nil,
            ])
        }
        return rows
    }
}

/// Baseline for benchmark 1: COPY the same number of rows into the bare table.
struct CopyBaseline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "COPY N event rows into a bare table with the events columns and key.")
    @OptionGroup var db: DatabaseOptions
    @Option var seed = 7

    func run() async throws {
        let connection = try PostgresConnection.connect(
            PostgresConnectionSettings(url: db.databaseURL, statementTimeoutMilliseconds: Int(db.maxSeconds * 1000), applicationName: "tanhui-load"))
        defer { connection.close() }
        try BareTable.reset(connection)
        let rows = BareTable.rows(db.rows, seed: seed)
        let sql = "COPY \(BareTable.name) (\(BareTable.columns.joined(separator: ", "))) FROM STDIN"
        let start = ContinuousClock.now
        let copied = try connection.copyIn(PostgresQuery(stringLiteral: sql), rows: rows)
        let elapsed = seconds(ContinuousClock.now - start)
        emit(["benchmark": "copy_baseline", "rows": copied, "seconds": round3(elapsed), "rows_per_s": round3(Double(copied) / elapsed)])
    }
}

/// Baseline for benchmark 2: one row per INSERT, autocommit, from C concurrent connections.
struct InsertBaseline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Single-row autocommit INSERTs into the bare table from C connections (one thread each).")
    @OptionGroup var db: DatabaseOptions
    @Option var concurrency = 64
    @Option var seed = 8

    func run() async throws {
        let settings = PostgresConnectionSettings(url: db.databaseURL, statementTimeoutMilliseconds: 30_000, applicationName: "tanhui-load")
        do {
            let connection = try PostgresConnection.connect(settings)
            try BareTable.reset(connection)
            connection.close()
        }
        let rows = BareTable.rows(db.rows, seed: seed)
        let result = Self.insert(rows: rows, settings: settings, concurrency: concurrency, maxSeconds: db.maxSeconds)
        var out = result
        out["benchmark"] = "insert_baseline"
        out["concurrency"] = concurrency
        emit(out)
    }

    /// Runs on plain threads: libpq calls block, and the cooperative pool has only one thread per core.
    static func insert(rows: [[String?]], settings: PostgresConnectionSettings, concurrency: Int, maxSeconds: Double) -> [String: Any] {
        let tickets = Tickets(limit: rows.count, maxSeconds: maxSeconds)
        let results = Mutex<(done: Int, failures: Int, latency: Histogram<UInt64>, error: String?)>(
            (0, 0, Histogram<UInt64>(highestTrackableValue: 120_000_000), nil))
        let group = DispatchGroup()
        let ready = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        for _ in 0..<concurrency {
            group.enter()
            let thread = Thread {
                var done = 0
                var failures = 0
                var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000)
                var firstError: String?
                let connection = try? PostgresConnection.connect(settings)
                ready.signal()
                go.wait()
                if let connection {
                    while let index = tickets.take() {
                        let row = rows[index]
                        let start = ContinuousClock.now
                        do {
                            _ = try connection.query(
                                PostgresQuery(
                                    sql: """
                                        INSERT INTO bench_bare_events (province, event_id, citizen_id, device_id, kind, occurred_at, ended_at, device_occurred_at, device_ended_at,
                                        clock_offset_ms, mode, material, distance_m, weight_g, unit_count, consumption_wh, baseline_wh, days,
                                        evidence_source, evidence_ref, content_sha256, occupies_interval, received_at, status, code, message)
                                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
                                        """, parameters: row))
                            done += 1
                        } catch {
                            failures += 1
                            if firstError == nil { firstError = "\(error)" }
                        }
                        _ = latency.record(UInt64(max(0, seconds(ContinuousClock.now - start) * 1e6)))
                    }
                    connection.close()
                } else {
                    failures += 1
                    firstError = "could not connect"
                }
                results.withLock {
                    $0.done += done
                    $0.failures += failures
                    $0.latency.add(latency)
                    if $0.error == nil { $0.error = firstError }
                }
                group.leave()
            }
            thread.start()
        }
        for _ in 0..<concurrency { ready.wait() }
        let start = ContinuousClock.now
        for _ in 0..<concurrency { go.signal() }
        group.wait()
        let elapsed = seconds(ContinuousClock.now - start)
        return results.withLock { r in
            [
                "rows": r.done, "failures": r.failures, "seconds": round3(elapsed), "rows_per_s": round3(Double(r.done) / elapsed),
                "p50_ms": Double(r.latency.valueAtPercentile(50)) / 1000, "p99_ms": Double(r.latency.valueAtPercentile(99)) / 1000,
                "first_error": r.error ?? "",
            ] as [String: Any]
        }
    }
}

/// Benchmark 5: pure rule evaluation on one core.
struct Evaluate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a mix of decoded events against a rule set on one thread.")
    @Option(help: "Rule set YAML.") var ruleSet: String
    @Option(help: "Distinct events in the loop.") var events = 1000
    @Option(help: "Stop after this many evaluations.") var maxEvaluations = 200_000_000
    @Option(help: "Stop after this many seconds.") var maxSeconds = 3.0

    func run() async throws {
        let text = try String(contentsOfFile: ruleSet, encoding: .utf8)
        let rules = try RuleSetParser.parse(text)
        let now = Date()
        var rng = SplitMix64(workloadSeed: 42)
        let decoded: [ActionEvent] = (0..<events).map { i in
            let e = Workload.event(
                kind: Workload.kind(rng.below(20)), start: now.addingTimeInterval(-Double(i % 500) * 600 - 3600), slot: 6000, tag: "\(i)",
                rng: &rng)
            var data = EventData()
            for (key, value) in e.data {
                let v = value.replacingOccurrences(of: "\"", with: "")
                switch key {
                case "mode": data.mode = v
                case "material": data.material = v
                case "distance_m": data.distanceMeters = Int64(v)
                case "weight_g": data.weightGrams = Int64(v)
                case "consumption_wh": data.consumptionWh = Int64(v)
                case "baseline_wh": data.baselineWh = Int64(v)
                case "days": data.days = Int64(v)
                default: break
                }
            }
            return ActionEvent(id: e.id, kind: e.kind, province: Workload.province, occurredAt: e.start, endedAt: e.end, data: data)
        }
        let usage = CapUsage()
        var awarded = 0
        var rejected = 0
        var points: Int64 = 0
        var evaluations = 0
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(maxSeconds * 1000))
        outer: while evaluations < maxEvaluations {
            for event in decoded {
                switch RuleEvaluator.evaluate(event: event, ruleSet: rules, usage: usage, receivedAt: now) {
                case .accepted(let award):
                    awarded += 1
                    points &+= award.pointsAwarded
                case .rejected:
                    rejected += 1
                }
            }
            evaluations += decoded.count
            if ContinuousClock.now >= deadline { break outer }
        }
        let elapsed = seconds(ContinuousClock.now - start)
        emit([
            "benchmark": "evaluate", "evaluations": evaluations, "awarded": awarded, "rejected": rejected, "points_checksum": points,
            "seconds": round3(elapsed), "evaluations_per_s": round3(Double(evaluations) / elapsed),
        ])
    }
}
