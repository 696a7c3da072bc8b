import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// Push path v2: what one hostile or unlucky citizen could do to everyone else, each defect
/// reproduced from outside (issue 19) against the real functions and a real server.
@Suite("Push path: no citizen can hurt another", .needsDatabase)
struct PushPathTests {
    typealias F = LedgerFixtures
    typealias H = SyncHTTPTests

    /// The sample CN-GD rule set as a new version taking effect at `effectiveFrom`.
    static func nextVersion(_ version: Int, effectiveFrom: String, gramsPerPoint: Int = 10) throws -> String {
        var lines = try F.ruleSetDocument().components(separatedBy: "\n")
        for index in lines.indices {
            if lines[index].hasPrefix("version:") { lines[index] = "version: \(version)" }
            if lines[index].hasPrefix("effective_from:") { lines[index] = "effective_from: \(effectiveFrom)" }
            if lines[index].hasPrefix("grams_per_point:") { lines[index] = "grams_per_point: \(gramsPerPoint)" }
        }
        return lines.joined(separator: "\n")
    }

    static func rfc3339(_ date: Date) -> String { F.iso(date) }

    @Test("a far-future event, a clock reset to 1970 or a stored clock_skew verdict cannot freeze publication (the real judged-through function)")
    func nothingStoredBlocksPublication() async throws {
        try await H.withServer { h in
            let now = Date()
            // A hostile device: 9999-12-31 in every province it likes.
            var hostile: [[String: Any]] = []
            for province in ["CN-GD", "CN-BJ"] {
                var event = H.event(kind: "waste_sorting", start: now, data: [:])
                event["province"] = province
                event["occurred_at"] = "9999-12-31T23:59:59Z"
                hostile.append(event)
            }
            // An honest phone whose clock reset to 1970 after recording a real trip 2 h ago.
            let honestTrip = H.event(start: now.addingTimeInterval(-7200))
            let reply = try await h.push(hostile + [honestTrip], sentAt: Date(timeIntervalSince1970: 60))
            #expect(reply.status == 200, "\(reply.body)")
            let results = try H.results(reply)
            #expect(
                results.map { "\($0["status"] as? String ?? "?")/\($0["code"] as? String ?? "-")" } == [
                    "rejected/invalid", "rejected/invalid", "rejected/clock_skew",
                ])
            #expect(try await F.count(h.url, "SELECT count(*) FROM events") == 0, "nothing judged by the device clock is stored")

            // Publication is not frozen: the real function sees no verdict at all.
            let services = try TestDatabase.makeServices(url: h.url)
            let v2 = try Self.nextVersion(2, effectiveFrom: Self.rfc3339(now.addingTimeInterval(3600)))
            _ = try await services.ruleSets.publish(document: v2, publishedBy: "test")

            // Once the phone's clock is right, the same trip is credited: nothing was lost.
            let resent = try H.results(try await h.push([honestTrip], sentAt: Date()))
            #expect(resent[0]["status"] as? String == "accepted", "\(resent)")

            // A clock_skew row stored by an earlier version never holds publication back.
            _ = try await F.count(
                h.url,
                """
                WITH stored AS (
                    INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, device_occurred_at, clock_offset_ms,
                        content_sha256, received_at, status, code, message)
                    VALUES ('CN-GD', \(UUID()), \(UUID()), 'old', 'waste_sorting', '2090-01-01T00:00:00Z', '2090-01-01T00:00:00Z', 0,
                        repeat('0', 64), now(), 'rejected', 'clock_skew', 'stored by v1')
                    RETURNING 1)
                SELECT count(*) FROM stored
                """)
            let v3 = try Self.nextVersion(3, effectiveFrom: Self.rfc3339(now.addingTimeInterval(7200)))
            _ = try await services.ruleSets.publish(document: v3, publishedBy: "test")
            // The accepted trip still counts: a version taking effect before it is refused.
            let retro = try Self.nextVersion(4, effectiveFrom: Self.rfc3339(now.addingTimeInterval(-8000)))
            await #expect(throws: RuleSetRejected.self) { try await services.ruleSets.publish(document: retro, publishedBy: "test") }
            await services.shutdown()
        }
    }

    @Test("instants in year 0 or corrected below 2000 are per-item invalid beside a good event, never a 500")
    func outOfRangeInstants() async throws {
        try await H.withServer { h in
            let now = Date()
            var yearZero = H.event(kind: "waste_sorting", start: now, data: [:])
            yearZero["occurred_at"] = "0001-01-01T00:00:00+08:00"
            var endYearZero = H.event(start: now.addingTimeInterval(-4000))
            endYearZero["occurred_at"] = "0000-12-31T00:00:00Z"
            endYearZero["ended_at"] = "0001-01-01T00:00:00Z"
            let good = H.event(kind: "waste_sorting", start: now.addingTimeInterval(-600), data: [:])
            let reply = try await h.push([yearZero, endYearZero, good])
            #expect(reply.status == 200, "\(reply.body)")
            let results = try H.results(reply)
            #expect(results.map { $0["code"] as? String ?? $0["status"] as? String } == ["invalid", "invalid", "accepted"])
            let paths = (results[0]["errors"] as? [[String: Any]])?.compactMap { $0["path"] as? String }
            #expect(paths == ["occurred_at"])

            // A sent_at centuries ahead shifts every instant below 2000: invalid per item, 200.
            let shifted = try await h.push(
                [H.event(kind: "waste_sorting", start: now.addingTimeInterval(-900), data: [:])],
                sentAt: Date(timeIntervalSince1970: 16_725_225_600))  // 2500-01-01
            #expect(shifted.status == 200, "\(shifted.body)")
            #expect(try H.results(shifted)[0]["code"] as? String == "invalid")
            #expect(try await F.count(h.url, "SELECT count(*) FROM events") == 1)
        }
    }

    @Test("one push across provinces: each event judged by its own province's rules, balances and entries per province, provinces never mix")
    func multiProvinceBatch() async throws {
        try await H.withServer { h in
            let services = try TestDatabase.makeServices(url: h.url)
            _ = try await services.ruleSets.publish(document: try F.ruleSetDocument("CN-SH"), publishedBy: "test")
            await services.shutdown()
            let now = Date()
            func waste(_ province: String, _ minutesAgo: Double) -> [String: Any] {
                var event = H.event(kind: "waste_sorting", start: now.addingTimeInterval(-minutesAgo * 60), data: [:])
                event["province"] = province
                return event
            }
            let reply = try await h.push([waste("CN-GD", 30), waste("CN-SH", 40), waste("CN-BJ", 50), H.event(start: now.addingTimeInterval(-7200))])
            #expect(reply.status == 200, "\(reply.body)")
            let results = try H.results(reply)
            #expect(results.map { $0["code"] as? String ?? $0["status"] as? String } == ["accepted", "accepted", "no_ruleset", "accepted"])
            #expect(
                results.compactMap { ($0["award"] as? [String: Any])?["ruleset"] as? [String: Any] }.map { $0["province"] as? String } == [
                    "CN-GD", "CN-SH", "CN-GD",
                ])
            let balances = try #require(try H.json(reply.body)["balances"] as? [[String: Any]])
            #expect(balances.map { $0["province"] as? String } == ["CN-BJ", "CN-GD", "CN-SH"])
            #expect(balances.map { $0["points"] as? Int } == [0, 58, 1], "GD: 1 + 57 points; SH: one 10 g check-in at its own rate; BJ: nothing")
            let page = try await h.pull(cursor: nil)
            let entries = try #require(page["entries"] as? [[String: Any]])
            #expect(entries.map { "\($0["province"] as? String ?? "?")#\($0["seq"] as? Int ?? 0)" } == ["CN-GD#1", "CN-GD#2", "CN-SH#1"])
        }
    }

    @Test("a device pulling after its push misses no entry of the citizen's other devices")
    func pushHandsOutNoSkippingCursor() async throws {
        try await H.withServer { h in
            let now = Date()
            let deviceB = try await TestDatabase.tokens().issue(citizen: h.citizen, device: "tablet-b", ttl: 3600)
            let first = try await h.pull(cursor: nil)
            let cursorA = try #require(first["next_cursor"] as? String)
            // B's award lands between A's pull and A's push.
            #expect(
                try H.results(try await h.push([H.event(kind: "waste_sorting", start: now.addingTimeInterval(-1200), data: [:])], token: deviceB))[0][
                    "status"] as? String == "accepted")
            let pushA = try await h.push([H.event(kind: "waste_sorting", start: now.addingTimeInterval(-600), data: [:])])
            #expect(try H.json(pushA.body)["cursor"] == nil, "a push response must not hand out a position")
            let page = try await h.pull(cursor: cursorA)
            #expect(page["reset"] as? Bool == false)
            #expect((page["entries"] as? [[String: Any]])?.count == 2, "\(page)")
        }
    }

    @Test("a cursor is bound to its citizen: another citizen's cursor is a reset, not a position")
    func cursorBoundToCitizen() async throws {
        try await H.withServer { h in
            let now = Date()
            let other = UUID()
            let otherToken = try await TestDatabase.tokens().issue(citizen: other, device: "b", ttl: 3600)
            for offset in [1200.0, 2400, 3600] {
                _ = try await h.push([H.event(kind: "waste_sorting", start: now.addingTimeInterval(-offset), data: [:])])
                _ = try await h.push([H.event(kind: "waste_sorting", start: now.addingTimeInterval(-offset), data: [:])], token: otherToken)
            }
            let cursorA = try #require(try await h.pull(cursor: nil, limit: 2)["next_cursor"] as? String)
            let asB = try await h.pull(cursor: cursorA, token: otherToken)
            #expect(asB["reset"] as? Bool == true, "\(asB)")
            #expect((asB["entries"] as? [[String: Any]])?.isEmpty == true)
            // B's own position still works from the beginning: all three entries.
            #expect((try await h.pull(cursor: nil, token: otherToken)["entries"] as? [[String: Any]])?.count == 3)
            #expect(try await h.pull(cursor: cursorA)["reset"] as? Bool == false)
        }
    }

    @Test("a version published while a batch is in flight is either seen by it or waits for it: the batch waits on the publication lock")
    func publicationDoesNotRaceBatches() async throws {
        try await F.withLedger { services, url in
            let eventAt = F.base
            let receivedAt = F.base.addingTimeInterval(3600)
            // v2 takes effect before the event; with half the grams per point, twice the points.
            let v2 = try Self.nextVersion(2, effectiveFrom: Self.rfc3339(eventAt.addingTimeInterval(-86_400)), gramsPerPoint: 5)
            // A publisher holding the publication lock, mid-publication.
            let publisher = try PostgresConnection.connect(.init(url: url, statementTimeoutMilliseconds: 60_000, applicationName: "publisher"))
            try publisher.query("BEGIN")
            try publisher.query("SELECT pg_advisory_xact_lock(hashtext('tanhui.rules.CN-GD'))")
            let submitted = Task {
                try await services.ledger.submit([F.metro(at: eventAt)], citizen: UUID(), device: "d", receivedAt: receivedAt, sentAt: nil)
            }
            // Wait (bounded, by condition) until the batch blocks on the lock.
            let deadline = ContinuousClock.now + .seconds(60)
            var waiting = 0
            while waiting == 0 && ContinuousClock.now < deadline {
                waiting = try publisher.query(
                    """
                    SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    """
                ).scalar(Int.self)
                if waiting == 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(waiting == 1, "the batch must wait for the publication lock instead of judging under the old version")
            try publisher.query(
                """
                INSERT INTO rule_sets (province, version, effective_from, document, document_format, content_sha256, methodology, published_by)
                VALUES ('CN-GD', 2, \(eventAt.addingTimeInterval(-86_400)), \(v2), 'yaml', \(RuleSetService.contentHash(of: v2)), 'v2', 'race test')
                """)
            // An admin publication (as `tanhui rules publish` records it): the governance check
            // requires every version to have its publication record.
            try publisher.query("INSERT INTO ruleset_publications (province, version, mode, published_by) VALUES ('CN-GD', 2, 'admin', 'race test')")
            try publisher.query("COMMIT")
            publisher.close()
            let verdicts = try await submitted.value
            #expect(verdicts[0].award?.ruleSetVersion == 2, "\(verdicts)")
            #expect(verdicts[0].award?.points == 115)
            // Sealed first: the event's received_at lies days back, and the audit holds unsealed events to the seal bound.
            try await services.ledger.seal()
            let audit = try await CommandRunner.tanhui(["audit"], databaseURL: url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }

    @Test("one event id in two provinces: two independent events, each with its own stable verdict")
    func idsScopedPerProvince() async throws {
        try await F.withLedger { services, url in
            _ = try await services.ruleSets.publish(document: try F.ruleSetDocument("CN-BJ"), publishedBy: "test")
            let id = UUID()
            let receivedAt = F.base.addingTimeInterval(3600)
            let gd = F.metro(id: id, at: F.base)
            let bj = F.event(
                F.wire([
                    "id": id.uuidString, "kind": "transit_trip", "province": "CN-BJ", "occurred_at": F.iso(F.base.addingTimeInterval(7200)),
                    "ended_at": F.iso(F.base.addingTimeInterval(9000)), "data": ["mode": "rail", "distance_m": 12_400],
                ]))
            // Raced by two citizens' batches at once, then resent: each key keeps its verdict.
            let citizens = [UUID(), UUID()]
            async let first = services.ledger.submit([gd], citizen: citizens[0], device: "a", receivedAt: receivedAt, sentAt: nil)
            async let second = services.ledger.submit(
                [bj], citizen: citizens[1], device: "b", receivedAt: receivedAt.addingTimeInterval(7200), sentAt: nil)
            let (a, b) = try await (first, second)
            #expect(a[0].status == .accepted && b[0].status == .accepted, "\(a) \(b)")
            for _ in 0..<3 {
                #expect(
                    try await services.ledger.submit([gd], citizen: citizens[0], device: "a", receivedAt: receivedAt, sentAt: nil)[0].status
                        == .duplicate)
                #expect(
                    try await services.ledger.submit(
                        [bj], citizen: citizens[1], device: "b", receivedAt: receivedAt.addingTimeInterval(7200), sentAt: nil)[0].status == .duplicate
                )
                #expect(
                    try await services.ledger.submit([gd], citizen: citizens[1], device: "b", receivedAt: receivedAt, sentAt: nil)[0].code
                        == "id_reused")
            }
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE event_id = \(id)") == 2)
        }
    }

    @Test("a trip without ended_at cannot escape the overlap rule, in the judge and in the database")
    func tripWithoutEnd() async throws {
        try await F.withLedger { services, url in
            // Shanghai credits bus trips per trip, with no duration or speed limit to need ended_at.
            _ = try await services.ruleSets.publish(document: try F.ruleSetDocument("CN-SH"), publishedBy: "test")
            let citizen = UUID()
            let receivedAt = F.base.addingTimeInterval(7200)
            func bus(_ start: Date, end: Date?) -> SubmissionItem {
                var object: [String: Any] = [
                    "id": UUID().uuidString, "kind": "transit_trip", "province": "CN-SH", "occurred_at": F.iso(start), "data": ["mode": "bus"],
                ]
                if let end { object["ended_at"] = F.iso(end) }
                return F.event(F.wire(object))
            }
            let verdicts = try await services.ledger.submit(
                [
                    bus(F.base, end: F.base.addingTimeInterval(1800)),
                    bus(F.base.addingTimeInterval(600), end: nil),  // inside the first trip
                    bus(F.base.addingTimeInterval(3600), end: nil),  // open-ended, alone: fine
                    bus(F.base.addingTimeInterval(3000), end: F.base.addingTimeInterval(4000)),  // covers the open-ended one
                ], citizen: citizen, device: "d", receivedAt: receivedAt, sentAt: nil)
            #expect(verdicts.map { $0.code ?? $0.status.rawValue } == ["accepted", "overlap", "accepted", "overlap"], "\(verdicts)")
            // The database holds the same line when the judge is bypassed: the exclusion
            // constraint refuses an accepted open-ended trip inside an accepted one.
            let error = await #expect(throws: PostgresError.self) {
                _ = try await F.count(
                    url,
                    """
                    WITH stored AS (
                        INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, device_occurred_at, clock_offset_ms,
                            content_sha256, occupies_interval, received_at, status)
                        VALUES ('CN-SH', \(UUID()), \(citizen), 'd', 'transit_trip', \(F.base.addingTimeInterval(900)), 'x', 0, repeat('0', 64), true, now(), 'accepted')
                        RETURNING 1)
                    SELECT count(*) FROM stored
                    """)
            }
            #expect(error?.sqlState == "23P01")
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE status = 'accepted'") == 2)
        }
    }
}

@Suite("Hot statements use province-first indexes", .needsDatabase)
struct HotStatementPlanTests {
    typealias F = LedgerFixtures

    static let ledgerTables = ["citizen_accounts", "events", "ledger_transactions", "ledger_entries", "ledger_chain", "cap_usage", "citizen_devices"]

    @Test("EXPLAIN of every push, pull, status, reversal, seal and publication statement over 100k accounts: no sequential scan of a ledger table")
    func noSequentialScans() async throws {
        try await F.withLedger { services, url in
            let pool = TestDatabase.makePool(url: url, size: 1, statementTimeoutMilliseconds: 600_000)
            try await pool.withConnection { connection in
                // 100k citizens with one award, one event, one chain link and one cap row each
                // (written directly: the plans, not the writes, are under test).
                try connection.query(
                    """
                    INSERT INTO citizen_accounts (province, citizen_id, balance_points, balance_grams, last_seq)
                    SELECT 'CN-GD', md5(i::text)::uuid, 10, 100, 1 FROM generate_series(1, 100000) i
                    """)
                // Statistics taken while no event is accepted (as after a bulk import), then
                // accepted events with evidence arrive: plans must not trust the stale counts.
                try connection.query(
                    """
                    INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, device_occurred_at, clock_offset_ms,
                        content_sha256, received_at, status, code, message)
                    SELECT 'CN-GD', md5('e' || i)::uuid, md5(i::text)::uuid, 'd', 'waste_sorting', timestamptz '2026-11-01' + i * interval '1 second', 'x', 0,
                        repeat('0', 64), now(), 'rejected', 'too_old', 'm' FROM generate_series(1, 100000) i
                    """)
                try connection.query("ANALYZE events")
                try connection.query(
                    """
                    INSERT INTO events (province, event_id, citizen_id, device_id, kind, occurred_at, ended_at, device_occurred_at, clock_offset_ms,
                        content_sha256, received_at, status, evidence_source, evidence_ref, occupies_interval)
                    SELECT 'CN-GD', md5('a' || i)::uuid, md5(i::text)::uuid, 'd', 'transit_trip', timestamptz '2026-11-01' + i * interval '1 hour',
                        timestamptz '2026-11-01' + i * interval '1 hour' + interval '20 minutes', 'x', 0,
                        repeat('0', 64), now(), 'accepted', 'card', 'ref-' || i, true FROM generate_series(1, 30000) i
                    """)
                try connection.query(
                    """
                    INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e, rule_set_version, methodology)
                    SELECT 'CN-GD', i, 'award', md5(i::text)::uuid, 1, md5('e' || i)::uuid, 10, 100, 1, 'm' FROM generate_series(1, 100000) i
                    """)
                try connection.query(
                    """
                    INSERT INTO ledger_entries (province, transaction_id, account, points)
                    SELECT 'CN-GD', i, a, CASE a WHEN 'issuance' THEN -10 ELSE 10 END
                    FROM generate_series(1, 100000) i, LATERAL (VALUES ('issuance'), ('citizen:' || md5(i::text)::uuid)) AS v(a)
                    """)
                try connection.query(
                    """
                    INSERT INTO ledger_chain (province, chain_seq, transaction_id, previous_hash, hash)
                    SELECT 'CN-GD', i, i, repeat('0', 64), repeat('0', 64) FROM generate_series(1, 100000) i
                    """)
                try connection.query(
                    """
                    INSERT INTO cap_usage (province, citizen_id, window_key, points, events)
                    SELECT 'CN-GD', md5(i::text)::uuid, '*/day/2026-11-01', 10, 1 FROM generate_series(1, 100000) i
                    """)
                try connection.query("SELECT setval('ledger_transaction_ids', 100000)")
                try connection.query("ANALYZE citizen_accounts, ledger_transactions, ledger_entries, ledger_chain, cap_usage, rule_sets")
            }
            await pool.shutdown()
            let plans = try await services.ledger.explainHotStatements(province: "CN-GD", citizen: UUID())
            #expect(plans.count >= 14)
            // The push's lookups probe an index per key (LATERAL), never hash a whole index.
            // push.read.0 draws the transaction ids; 1–4 are the province's events, evidence,
            // trips and cap usage (BatchRound.readStatements).
            for plan in plans where ["push.read.1", "push.read.2", "push.read.3", "push.read.4"].contains(plan.name) {
                #expect(!plan.plan.contains("Hash Join") && plan.plan.contains("Nested Loop"), "\(plan.name):\n\(plan.plan)")
            }
            for plan in plans {
                for table in Self.ledgerTables {
                    #expect(!plan.plan.contains("Seq Scan on \(table)"), "\(plan.name) scans \(table):\n\(plan.plan)")
                }
            }
            // Operators get the same report from the CLI.
            let cli = try await CommandRunner.tanhui(["ledger", "explain", "--province", "CN-GD"], databaseURL: url)
            #expect(cli.exitCode == 0, "\(cli.stderr)")
            #expect(cli.stdout.contains("-- push.read.0") && cli.stdout.contains("-- seal.pending"))
            // The oracle can fail: without the citizen index, pull and status scan the accounts.
            let dropper = TestDatabase.makePool(url: url, size: 1)
            try await dropper.withConnection { connection in
                try connection.query("DROP INDEX citizen_accounts_by_citizen")
            }
            await dropper.shutdown()
            let degraded = try await services.ledger.explainHotStatements(province: "CN-GD", citizen: UUID())
            #expect(degraded.filter { $0.plan.contains("Seq Scan on citizen_accounts") }.map(\.name).contains("pull.balances"))
            let degradedCLI = try await CommandRunner.tanhui(["ledger", "explain", "--province", "CN-GD"], databaseURL: url)
            #expect(degradedCLI.exitCode == 1 && degradedCLI.stderr.contains("sequential scan"), "\(degradedCLI.stderr)")
        }
    }
}

@Suite("Races between processes are decided by the database", .needsDatabase)
struct CrossProcessRaceTests {
    typealias F = LedgerFixtures

    /// Two services (two pools, as two `serve` processes would have) release their batches at
    /// the same instant: both wait on the publication lock the test holds, then run together.
    static func race(
        url: String, _ a: TanhuiServices, _ b: TanhuiServices, _ batchA: SubmissionItem, _ batchB: SubmissionItem,
        citizens: (UUID, UUID), receivedAt: Date
    ) async throws -> (Verdict, Verdict) {
        let holder = try PostgresConnection.connect(.init(url: url, statementTimeoutMilliseconds: 60_000, applicationName: "race-gate"))
        try holder.query("BEGIN")
        try holder.query("SELECT pg_advisory_xact_lock(hashtext('tanhui.rules.CN-GD'))")
        async let first = a.ledger.submit([batchA], citizen: citizens.0, device: "a", receivedAt: receivedAt, sentAt: nil)
        async let second = b.ledger.submit([batchB], citizen: citizens.1, device: "b", receivedAt: receivedAt, sentAt: nil)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let waiting = try holder.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").scalar(Int.self)
            if waiting >= 2 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        try holder.query("COMMIT")
        holder.close()
        let (x, y) = try await (first, second)
        return (x[0], y[0])
    }

    @Test("the same evidence and the same event id from two citizens through two processes: one award, the loser rerun after a unique violation")
    func uniqueViolationsDecide() async throws {
        try await F.withLedger { a, url in
            let b = try TestDatabase.makeServices(url: url)
            var raced = 0
            for attempt in 0..<6 {
                let start = F.base.addingTimeInterval(Double(attempt) * 7200)
                // Same evidence, different ids and citizens.
                let (e1, e2) = try await Self.race(
                    url: url, a, b, F.metro(at: start, evidence: "RACE-\(attempt)"), F.metro(at: start, evidence: "RACE-\(attempt)"),
                    citizens: (UUID(), UUID()), receivedAt: start.addingTimeInterval(3 * 3600))
                #expect(Set([e1.code ?? e1.status.rawValue, e2.code ?? e2.status.rawValue]) == ["accepted", "evidence_claimed"], "\(e1) \(e2)")
                // Same id, different citizens: one event, the other id_reused.
                let id = UUID()
                let (i1, i2) = try await Self.race(
                    url: url, a, b, F.metro(id: id, at: start.addingTimeInterval(3600)), F.metro(id: id, at: start.addingTimeInterval(3600)),
                    citizens: (UUID(), UUID()), receivedAt: start.addingTimeInterval(3 * 3600))
                #expect(Set([i1.code ?? i1.status.rawValue, i2.code ?? i2.status.rawValue]) == ["accepted", "id_reused"], "\(i1) \(i2)")
                raced = a.ledger.racesLost + b.ledger.racesLost
                if raced >= 2 && attempt >= 1 { break }
            }
            #expect(raced >= 1, "no round ever reached the unique indexes: the race was decided before the database")
            #expect(
                try await F.count(url, "SELECT count(*) FROM ledger_transactions")
                    == F.count(url, "SELECT count(*) FROM events WHERE status = 'accepted'"))
            let duplicates = try await F.count(
                url,
                "SELECT count(*) FROM (SELECT evidence_ref FROM events WHERE status = 'accepted' AND evidence_ref IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d"
            )
            #expect(duplicates == 0)
            await b.shutdown()
        }
    }

    @Test("mutation: without the evidence index the same cross-process race credits the evidence twice (the index, not the judge, decides)")
    func withoutTheIndexTheRaceIsLost() async throws {
        try await F.withLedger { a, url in
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withConnection { try $0.query("DROP INDEX events_evidence_credited_once") }
            await pool.shutdown()
            let b = try TestDatabase.makeServices(url: url)
            var doubled = false
            for attempt in 0..<6 where !doubled {
                let start = F.base.addingTimeInterval(Double(attempt) * 7200)
                let (e1, e2) = try await Self.race(
                    url: url, a, b, F.metro(at: start, evidence: "RACE-\(attempt)"), F.metro(at: start, evidence: "RACE-\(attempt)"),
                    citizens: (UUID(), UUID()), receivedAt: start.addingTimeInterval(3 * 3600))
                doubled = e1.status == .accepted && e2.status == .accepted
            }
            #expect(doubled, "the oracle above could not tell a missing index from a working one")
            await b.shutdown()
        }
    }
}

@Suite("Device tokens", .needsDatabase)
struct DeviceTokenCacheTests {
    @Test("a verified token is served from the cache only until it expires; forged tokens are never cached as valid")
    func cacheHonoursExpiry() async throws {
        let tokens = await TestDatabase.tokens()
        let now = Date()
        let token = try await tokens.issue(citizen: UUID(), device: "d", ttl: 60, now: now)
        #expect(await tokens.verify(token, now: now) != nil)
        #expect(await tokens.verify(token, now: now.addingTimeInterval(30)) != nil)
        #expect(await tokens.verify(token, now: now.addingTimeInterval(61)) == nil, "expired while cached")
        #expect(await tokens.verify(token + "x", now: now) == nil)
        let other = await DeviceTokens(secret: Array(repeating: 7, count: 32))
        #expect(await other.verify(token, now: now) == nil, "another key's cache never answers for this one")
    }
}
