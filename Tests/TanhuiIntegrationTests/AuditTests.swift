import Crypto
import Foundation
import Synchronization
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// `tanhui audit` against a clean ledger built through the service, then against the same
/// ledger corrupted directly in the database as a rogue superuser would.
@Suite("Audit: the books are right, or the audit says exactly where they are not", .needsDatabase)
struct AuditTests {
    typealias F = LedgerFixtures

    /// Rows of the clean ledger that tests corrupt and expect to be named.
    struct Clean: Sendable {
        var citizenA: UUID
        var citizenB: UUID
        var citizenC: UUID
        /// Citizen C's metro trip (its award is a middle transaction of the chain).
        var metroEvent: UUID
        var metroTransaction: Int64
        /// Citizen B's reversed trip.
        var reversedEvent: UUID
        var reversalTransaction: Int64
    }

    /// Three citizens, awards of several kinds, a day's bike cap reached, a reversal; sealed.
    static func buildClean(_ services: TanhuiServices, url: String) async throws -> Clean {
        let receivedAt = F.base.addingTimeInterval(86_400)
        let a = UUID()
        let b = UUID()
        let c = UUID()
        let hour: TimeInterval = 3600
        // A: a metro trip and four bike rides; the bike cap (100 points a day) binds on the third.
        _ = try await services.ledger.submit(
            [
                F.metro(at: F.base),
                F.bike(at: F.base.addingTimeInterval(1 * hour)), F.bike(at: F.base.addingTimeInterval(2 * hour)),
                F.bike(at: F.base.addingTimeInterval(3 * hour)),
            ], citizen: a, device: "a", receivedAt: receivedAt, sentAt: nil)
        _ = try await services.ledger.submit(
            [F.bike(at: F.base.addingTimeInterval(4 * hour))], citizen: a, device: "a", receivedAt: receivedAt, sentAt: nil)
        // B: waste check-ins and a metro trip with evidence, later reversed.
        let reversed = UUID()
        _ = try await services.ledger.submit(
            [
                F.waste(at: F.base), F.metro(id: reversed, at: F.base.addingTimeInterval(hour), evidence: "TXN-1"),
                F.waste(at: F.base.addingTimeInterval(3 * hour)),
            ], citizen: b, device: "b", receivedAt: receivedAt, sentAt: nil)
        // C: a metro trip, then more awards for A and C after it.
        let metro = UUID()
        let verdicts = try await services.ledger.submit(
            [F.metro(id: metro, at: F.base.addingTimeInterval(2 * hour), meters: 20_000)], citizen: c, device: "c", receivedAt: receivedAt,
            sentAt: nil)
        #expect(verdicts.map(\.status) == [.accepted])
        _ = try await services.ledger.submit(
            [F.waste(at: F.base.addingTimeInterval(5 * hour))], citizen: c, device: "c", receivedAt: receivedAt, sentAt: nil)
        _ = try await services.ledger.submit(
            [F.waste(at: F.base.addingTimeInterval(6 * hour))], citizen: a, device: "a", receivedAt: receivedAt, sentAt: nil)
        let reversal = try await services.ledger.reverse(event: reversed, province: "CN-GD", reason: "card reported stolen", actor: "admin:test")
        try await services.ledger.seal()
        #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions WHERE caps_applied <> '{}'") >= 1, "the bike cap must bind")
        let metroTransaction = try await Self.scalar(
            url, "SELECT transaction_id FROM ledger_transactions WHERE event_id = \(metro) AND kind = 'award'", as: Int64.self)
        return Clean(
            citizenA: a, citizenB: b, citizenC: c, metroEvent: metro, metroTransaction: metroTransaction,
            reversedEvent: reversed, reversalTransaction: reversal.transactionID)
    }

    static func scalar<Value: PostgresDecodable>(_ url: String, _ sql: PostgresQuery, as type: Value.Type) async throws -> Value {
        let pool = TestDatabase.makePool(url: url, size: 1)
        let value = try await pool.withConnection { try $0.query(sql).scalar(Value.self) }
        await pool.shutdown()
        return value
    }

    /// Runs statements as the database owner with the append-only triggers (and FKs) bypassed.
    static func rogue(_ url: String, _ statements: [PostgresQuery]) async throws {
        let pool = TestDatabase.makePool(url: url, size: 1)
        try await pool.withTransaction { connection in
            try TestDatabase.bypassTriggers(connection)
            for statement in statements { try connection.query(statement) }
        }
        await pool.shutdown()
    }

    /// As a rogue superuser: an award with no event behind it, balanced entries and a cached
    /// balance (and `last_seq`) that match it, created `backdatedSeconds` ago. Returns its id.
    static func forgeAward(_ url: String, citizen: UUID, points: Int64, grams: Int64, backdatedSeconds: Int = 0) async throws -> Int64 {
        let forged = try await scalar(url, "SELECT nextval('ledger_transaction_ids')", as: Int64.self)
        try await rogue(
            url,
            [
                """
                INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e, rule_set_version, methodology, created_at)
                SELECT 'CN-GD', \(forged), 'award', \(citizen), last_seq + 1, \(UUID()), \(points), \(grams), 1, 'forged', now() - make_interval(secs => \(backdatedSeconds))
                FROM citizen_accounts WHERE citizen_id = \(citizen)
                """,
                "INSERT INTO ledger_entries (province, transaction_id, account, points) VALUES ('CN-GD', \(forged), 'issuance', \(-points)), ('CN-GD', \(forged), \("citizen:" + citizen.uuidString.lowercased()), \(points))",
                "UPDATE citizen_accounts SET balance_points = balance_points + \(points), balance_grams = balance_grams + \(grams), last_seq = last_seq + 1 WHERE citizen_id = \(citizen)",
            ])
        return forged
    }

    /// `tanhui audit --json ARGS`; the parsed document and the raw result.
    static func audit(_ url: String, _ arguments: [String] = [], environment: [String: String] = [:]) async throws -> (CommandResult, [String: Any]) {
        let result = try await CommandRunner.tanhui(["audit", "--json"] + arguments, databaseURL: url, environment: environment)
        let object = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any]
        #expect(object != nil, "audit --json printed no JSON: \(result.stdout.prefix(500)) \(result.stderr.prefix(500))")
        return (result, object ?? [:])
    }

    static func check(_ report: [String: Any], _ id: String) -> [String: Any] {
        ((report["checks"] as? [[String: Any]]) ?? []).first { $0["id"] as? String == id } ?? [:]
    }

    /// Asserts exit 1, `id` violated, and `field` = `value` in its first, worst or last offender.
    static func expectViolated(
        _ outcome: (CommandResult, [String: Any]), _ id: String, _ field: String, _ value: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let (result, report) = outcome
        #expect(result.exitCode == 1, "exit \(result.exitCode): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(report["ok"] as? Bool == false, sourceLocation: sourceLocation)
        let check = Self.check(report, id)
        #expect(check["status"] as? String == "violated", "\(id): \(check)", sourceLocation: sourceLocation)
        #expect((check["count"] as? Int ?? 0) >= 1, sourceLocation: sourceLocation)
        let offenders = ["first", "worst", "last"].compactMap { check[$0] as? [String: Any] }
        let named = offenders.contains { offender in offender[field].map { "\($0)" } == value }
        #expect(named, "\(id) does not name \(field)=\(value): \(offenders)", sourceLocation: sourceLocation)
    }

    static func checkpointFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("audit-cp-\(UUID().uuidString)").path
    }

    /// The CLI's environment with a new checkpoint signing key.
    static func checkpointEnvironment(_ key: Curve25519.Signing.PrivateKey = .init()) -> [String: String] {
        ["TANHUI_CHECKPOINT_KEY": key.rawRepresentation.base64EncodedString()]
    }

    /// `tanhui ledger checkpoint` of CN-GD written to `file`, expected to succeed.
    /// The `watermark` line of an exported checkpoint file.
    static func watermark(ofCheckpoint file: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int64 {
        let note = try String(contentsOfFile: file, encoding: .utf8)
        return try #require(
            note.split(separator: "\n").first { $0.hasPrefix("watermark ") }.flatMap { Int64($0.dropFirst(10)) }, sourceLocation: sourceLocation)
    }

    static func exportCheckpoint(
        _ url: String, to file: String, environment: [String: String], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let exported = try await CommandRunner.tanhui(
            ["ledger", "checkpoint", "--province", "CN-GD", "--out", file], databaseURL: url, environment: environment)
        #expect(exported.exitCode == 0, "\(exported.stderr)", sourceLocation: sourceLocation)
    }

    /// A clean ledger and a signed checkpoint of it in a temporary file (removed after `body`):
    /// the start of every test of what happens after a checkpoint.
    static func withCheckpointedClean(
        _ body: (_ services: TanhuiServices, _ url: String, _ clean: Clean, _ file: String, _ environment: [String: String]) async throws -> Void
    ) async throws {
        try await F.withLedger { services, url in
            let clean = try await buildClean(services, url: url)
            let environment = checkpointEnvironment()
            let file = checkpointFile()
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await exportCheckpoint(url, to: file, environment: environment)
            try await body(services, url, clean, file, environment)
        }
    }

    /// A second award of `event` (a copy of its award under a new id, 1,000 sequence numbers
    /// on), as a superuser would insert it with the index that forbids it dropped or altered.
    static func secondAward(of event: UUID) -> PostgresQuery {
        """
        INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e,
            rule_set_version, methodology, created_at)
        SELECT province, nextval('ledger_transaction_ids'), kind, citizen_id, citizen_seq + 1000, event_id, points, grams_co2e,
            rule_set_version, methodology, created_at
        FROM ledger_transactions WHERE event_id = \(event) AND kind = 'award'
        """
    }

    @Test("a clean ledger passes every check: exit 0, all ok, in text and JSON, with a checkpoint and in parallel")
    func cleanLedger() async throws {
        try await Self.withCheckpointedClean { services, url, _, file, environment in

            let text = try await CommandRunner.tanhui(["audit", "--checkpoint", file], databaseURL: url, environment: environment)
            #expect(text.exitCode == 0, "\(text.stdout)\n\(text.stderr)")
            for id in AuditCheckID.allCases {
                #expect(
                    text.stdout.split(separator: "\n").contains { $0.hasPrefix("ok") && $0.contains(" \(id.rawValue) ") },
                    "\(id.rawValue) not ok:\n\(text.stdout)")
            }
            #expect(!text.stdout.contains("VIOLATED"))
            #expect(text.stderr.isEmpty, "no progress output when stderr is not a terminal: \(text.stderr)")

            let (result, report) = try await Self.audit(url, ["--checkpoint", file, "--jobs", "2"], environment: environment)
            #expect(result.exitCode == 0)
            #expect(report["ok"] as? Bool == true)
            #expect(report["provinces"] as? [String] == ["CN-GD"])
            #expect((report["rows_checked"] as? Int ?? 0) > 10)
            let checks = report["checks"] as? [[String: Any]] ?? []
            #expect(checks.map { $0["id"] as? String } == AuditCheckID.allCases.map(\.rawValue))
            for check in checks {
                #expect(check["status"] as? String == "ok")
                #expect(check["count"] as? Int == 0)
                #expect(check["first"] is NSNull && check["worst"] is NSNull && check["last"] is NSNull)
                #expect(check["title"] is String)
            }
            #expect(Self.check(report, "checkpoints")["checked"] as? Int == 1)
            #expect((Self.check(report, "replay")["checked"] as? Int ?? 0) >= 10)
            #expect((Self.check(report, "hash_chain")["checked"] as? Int ?? 0) >= 11)
        }
    }

    @Test("UPDATE of an entry amount: transactions_balance names the transaction")
    func updatedEntry() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url, ["UPDATE ledger_entries SET points = points + 100 WHERE transaction_id = \(clean.metroTransaction) AND account <> 'issuance'"])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "transactions_balance", "transaction_id", "\(clean.metroTransaction)")
            Self.expectViolated(outcome, "hash_chain", "transaction_id", "\(clean.metroTransaction)")
            Self.expectViolated(outcome, "conservation", "account", "issuance")
        }
    }

    @Test("DELETE of a middle entry: transactions_balance names the transaction")
    func deletedEntry() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(url, ["DELETE FROM ledger_entries WHERE transaction_id = \(clean.metroTransaction) AND account = 'issuance'"])
            Self.expectViolated(try await Self.audit(url), "transactions_balance", "transaction_id", "\(clean.metroTransaction)")
        }
    }

    @Test("DELETE of a middle transaction: the chain link names it and its event is left without award")
    func deletedTransaction() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url,
                [
                    "DELETE FROM ledger_entries WHERE transaction_id = \(clean.metroTransaction)",
                    "DELETE FROM ledger_transactions WHERE transaction_id = \(clean.metroTransaction)",
                ])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "hash_chain", "transaction_id", "\(clean.metroTransaction)")
            Self.expectViolated(outcome, "completeness", "event_id", clean.metroEvent.uuidString.lowercased())
            Self.expectViolated(outcome, "cached_balances", "account", "citizen:" + clean.citizenC.uuidString.lowercased())
        }
    }

    @Test("INSERT of a forged award (balanced, but no event): completeness names the transaction")
    func forgedAward() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            let forged = try await Self.forgeAward(url, citizen: clean.citizenC, points: 400, grams: 4000)
            try await services.ledger.seal()
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "completeness", "transaction_id", "\(forged)")
            #expect(Self.check(outcome.1, "transactions_balance")["status"] as? String == "ok")
            #expect(Self.check(outcome.1, "hash_chain")["status"] as? String == "ok")
        }
    }

    @Test("an event's quantity edited: replay names the event and its award, hash_chain the event")
    func editedEvent() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(url, ["UPDATE events SET distance_m = distance_m * 2 WHERE event_id = \(clean.metroEvent)"])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "replay", "event_id", clean.metroEvent.uuidString.lowercased())
            Self.expectViolated(outcome, "replay", "transaction_id", "\(clean.metroTransaction)")
            // Chain v2 seals events too: the edited row itself is named.
            Self.expectViolated(outcome, "hash_chain", "event_id", clean.metroEvent.uuidString.lowercased())
        }
    }

    @Test("a published rule-set document edited: replay names the version")
    func editedRuleSet() async throws {
        try await F.withLedger { services, url in
            _ = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url,
                [
                    "UPDATE rule_sets SET document = replace(document, 'grams_per_km: 46.7', 'grams_per_km: 93.4') WHERE province = 'CN-GD' AND version = 1"
                ])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "replay", "rule_set_version", "1")
            let first = Self.check(outcome.1, "replay")["first"] as? [String: Any]
            #expect((first?["detail"] as? String)?.contains("content_sha256") == true)
        }
    }

    @Test("the whole chain rewritten consistently: only an earlier checkpoint catches it (key from env or --public-key)")
    func rewrittenChain() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            let key = Curve25519.Signing.PrivateKey()
            let environment = Self.checkpointEnvironment(key)
            let file = Self.checkpointFile()
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await Self.exportCheckpoint(url, to: file, environment: environment)
            let sequence = try await Self.scalar(url, "SELECT max(chain_seq) FROM ledger_chain", as: Int64.self)

            try await Self.rogue(
                url,
                [
                    "UPDATE ledger_entries SET points = points * 10 WHERE transaction_id = \(clean.metroTransaction)",
                    "UPDATE ledger_transactions SET points = points * 10 WHERE transaction_id = \(clean.metroTransaction)",
                    "UPDATE citizen_accounts SET balance_points = balance_points + 9 * (SELECT points / 10 FROM ledger_transactions WHERE transaction_id = \(clean.metroTransaction)) WHERE citizen_id = \(clean.citizenC)",
                    "DELETE FROM ledger_chain",
                ])
            try await services.ledger.seal()

            let outcome = try await Self.audit(url, ["--checkpoint", file], environment: environment)
            Self.expectViolated(outcome, "checkpoints", "file", file)
            Self.expectViolated(outcome, "checkpoints", "chain_seq", "\(sequence)")
            #expect(Self.check(outcome.1, "hash_chain")["status"] as? String == "ok", "the rewrite is internally consistent")
            #expect(Self.check(outcome.1, "transactions_balance")["status"] as? String == "ok")

            let publicKey = key.publicKey.rawRepresentation.base64EncodedString()
            Self.expectViolated(try await Self.audit(url, ["--checkpoint", file, "--public-key", publicKey]), "checkpoints", "file", file)
            // A checkpoint signed by another key is refused.
            let other = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString()
            let (_, report) = try await Self.audit(url, ["--checkpoint", file, "--public-key", other])
            #expect(
                (Self.check(report, "checkpoints")["first"] as? [String: Any])?["detail"] as? String == Checkpoint.Invalid.untrustedKey.description)
        }
    }

    @Test("a cached balance drifted: cached_balances names the account")
    func driftedBalance() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(url, ["UPDATE citizen_accounts SET balance_points = balance_points + 1 WHERE citizen_id = \(clean.citizenA)"])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "cached_balances", "account", "citizen:" + clean.citizenA.uuidString.lowercased())
            #expect(Self.check(outcome.1, "conservation")["status"] as? String == "ok")
            // The human report names it too, with first/worst/last lines.
            let text = try await CommandRunner.tanhui(["audit"], databaseURL: url)
            #expect(text.exitCode == 1)
            #expect(text.stdout.contains("VIOLATED  cached_balances"))
            #expect(text.stdout.contains("first/worst/last: province=CN-GD account=citizen:" + clean.citizenA.uuidString.lowercased()))
        }
    }

    @Test(
        "--statement-timeout bounds the audit's statements, not the service's TANHUI_DB_STATEMENT_TIMEOUT_MS: blocked on a lock, an audit waits past the service's 1 s with 30 s, and exits 2 after 1 s with the service's bound at 10 min"
    )
    func statementTimeout() async throws {
        try await F.withLedger { services, url in
            _ = try await Self.buildClean(services, url: url)
            let lockedBy = "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_transactions'::regclass AND mode = 'AccessExclusiveLock'"
            /// psql holds ledger_transactions exclusively until cancelled (at most 60 s).
            func holdLock() async throws -> Task<CommandResult, any Error> {
                let holder = Task {
                    try await CommandRunner.run(
                        "/usr/bin/env",
                        [
                            "psql", "-X", "-q", url, "-c",
                            "SET application_name = 'tanhui-lock-holder'; BEGIN; LOCK TABLE ledger_transactions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;",
                        ], timeout: .seconds(90))
                }
                try await Self.until(url, lockedBy + " AND granted")
                return holder
            }
            func release(_ holder: Task<CommandResult, any Error>) async throws {
                _ = try await Self.scalar(
                    url, "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tanhui-lock-holder'", as: Int64.self)
                _ = try await holder.value
            }

            // Waits: seen blocked on the lock, released 2 s later, long after the service's bound.
            var holder = try await holdLock()
            async let waiting = CommandRunner.tanhui(
                ["audit", "--json", "--statement-timeout", "30"], databaseURL: url, environment: ["TANHUI_DB_STATEMENT_TIMEOUT_MS": "1000"])
            try await Self.until(url, lockedBy.replacingOccurrences(of: "AccessExclusiveLock", with: "AccessShareLock") + " AND NOT granted")
            try await Task.sleep(for: .seconds(2))
            try await release(holder)
            let waited = try await waiting
            #expect(waited.exitCode == 0, "\(waited.stderr.prefix(500)) \(waited.stdout.prefix(500))")

            // Bounded: the service's bound is 10 min, the audit's 1 s.
            holder = try await holdLock()
            let bounded = try await CommandRunner.tanhui(
                ["audit", "--json", "--statement-timeout", "1"], databaseURL: url, environment: ["TANHUI_DB_STATEMENT_TIMEOUT_MS": "600000"],
                timeout: .seconds(20))
            try await release(holder)
            #expect(bounded.exitCode == 2 && bounded.stderr.contains("statement timeout"), "\(bounded.exitCode): \(bounded.stderr.prefix(500))")

            for wrong in ["0", "86401", "soon"] {
                let refused = try await CommandRunner.tanhui(["audit", "--statement-timeout", wrong], databaseURL: url)
                #expect(refused.exitCode == 2 && refused.stderr.contains("--statement-timeout must be"), "\(wrong): \(refused.stderr)")
            }
        }
    }

    /// Polls until `count` (a count(*) query) is at least 1, for at most 30 s.
    static func until(_ url: String, _ count: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for _ in 0..<300 {
            if try await scalar(url, PostgresQuery(stringLiteral: count), as: Int64.self) >= 1 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("never true: \(count)", sourceLocation: sourceLocation)
    }

    @Test("an append-only trigger disabled: guard_rails names it")
    func disabledTrigger() async throws {
        try await F.withLedger { services, url in
            _ = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url, ["ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only", "GRANT DELETE ON ledger_chain TO tanhui_service"])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "guard_rails", "trigger", "ledger_entries_append_only")
            Self.expectViolated(outcome, "guard_rails", "table", "ledger_chain")
        }
    }

    @Test("a reversal that no longer mirrors its award; cap usage drifted; a stalled sealer")
    func reversalsCapsBacklog() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url,
                [
                    "UPDATE ledger_transactions SET grams_co2e = grams_co2e + 1 WHERE transaction_id = \(clean.reversalTransaction)",
                    "UPDATE cap_usage SET points = points + 1000 WHERE citizen_id = \(clean.citizenA) AND window_key LIKE 'bike_ride/%'",
                ])
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(7 * 3600))], citizen: clean.citizenB, device: "b",
                receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            let unsealed = try await Self.scalar(url, "SELECT max(transaction_id) FROM ledger_transactions", as: Int64.self)
            let outcome = try await Self.audit(url, ["--seal-bound", "0"])
            Self.expectViolated(outcome, "reversals", "transaction_id", "\(clean.reversalTransaction)")
            Self.expectViolated(outcome, "caps_and_negative_balances", "account", "citizen:" + clean.citizenA.uuidString.lowercased())
            Self.expectViolated(outcome, "unsealed_backlog", "transaction_id", "\(unsealed)")
            // --from/--to restrict what is reported, not what is folded.
            let (_, later) = try await Self.audit(url, ["--seal-bound", "0", "--from", "2999-01-01"])
            #expect(Self.check(later, "reversals")["status"] as? String == "ok")
            #expect(Self.check(later, "unsealed_backlog")["status"] as? String == "ok")
        }
    }

    @Test("exit 2 when the audit cannot run: database unreachable, checkpoint file missing, bad argument")
    func couldNotRun() async throws {
        let unreachable = try await CommandRunner.tanhui(["audit"], databaseURL: "postgresql://tanhui@127.0.0.1:1/tanhui?connect_timeout=2")
        #expect(unreachable.exitCode == 2, "\(unreachable.stderr)")
        #expect(unreachable.stdout.isEmpty)
        try await F.withLedger { _, url in
            let missing = try await CommandRunner.tanhui(
                ["audit", "--checkpoint", "/nonexistent/cp-\(UUID().uuidString)"], databaseURL: url,
                environment: ["TANHUI_CHECKPOINT_KEY": Curve25519.Signing.PrivateKey().rawRepresentation.base64EncodedString()])
            #expect(missing.exitCode == 2)
            #expect(missing.stderr.contains("cannot read checkpoint file"))
            let jobs = try await CommandRunner.tanhui(["audit", "--jobs", "zero"], databaseURL: url)
            #expect(jobs.exitCode == 2)
            let from = try await CommandRunner.tanhui(["audit", "--from", "yesterday"], databaseURL: url)
            #expect(from.exitCode == 2)
            // An empty ledger (rule set published, nothing awarded) holds.
            let empty = try await CommandRunner.tanhui(["audit"], databaseURL: url)
            #expect(empty.exitCode == 0, "\(empty.stdout)\(empty.stderr)")
        }
    }

    /// The clean ledger plus a Beijing ledger (rule set published, two citizens' check-ins), sealed.
    static func buildTwoProvinces(_ services: TanhuiServices, url: String) async throws -> (Clean, beijingCitizen: UUID) {
        let clean = try await Self.buildClean(services, url: url)
        _ = try await services.ruleSets.publish(document: try F.ruleSetDocument("CN-BJ"), publishedBy: "test")
        let beijing = UUID()
        let items: [SubmissionItem] = (0..<3).map { slot in
            .event(
                F.wire([
                    "id": UUID().uuidString, "kind": "waste_sorting", "province": "CN-BJ",
                    "occurred_at": F.iso(F.base.addingTimeInterval(Double(slot) * 3600)),
                ]))
        }
        let verdicts = try await services.ledger.submit(
            items, citizen: beijing, device: "bj", receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
        #expect(verdicts.map(\.status) == [.accepted, .accepted, .accepted])
        _ = try await services.ledger.submit(
            [F.waste(at: F.base.addingTimeInterval(9 * 3600))], citizen: UUID(), device: "x", receivedAt: F.base.addingTimeInterval(86_400),
            sentAt: nil)
        try await services.ledger.seal()
        return (clean, beijing)
    }

    @Test("--province audits only the named provinces; --jobs N gives the same report as one job")
    func provincesAndJobs() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildTwoProvinces(services, url: url)
            try await Self.rogue(
                url, ["UPDATE citizen_accounts SET balance_points = balance_points + 1 WHERE province = 'CN-GD' AND citizen_id = \(clean.citizenA)"])

            let (beijingResult, beijing) = try await Self.audit(url, ["--province", "CN-BJ"])
            #expect(beijingResult.exitCode == 0, "\(beijingResult.stdout)")
            #expect(beijing["provinces"] as? [String] == ["CN-BJ"])
            let beijingReplayed = Self.check(beijing, "replay")["checked"] as? Int ?? 0
            let guangdong = try await Self.audit(url, ["--province", "CN-GD"])
            #expect(guangdong.1["provinces"] as? [String] == ["CN-GD"])
            Self.expectViolated(guangdong, "cached_balances", "account", "citizen:" + clean.citizenA.uuidString.lowercased())

            let (oneJob, serial) = try await Self.audit(url, ["--jobs", "1"])
            let (twoJobs, parallel) = try await Self.audit(url, ["--jobs", "2"])
            #expect(oneJob.exitCode == 1 && twoJobs.exitCode == 1)
            #expect(Set(parallel["provinces"] as? [String] ?? []) == ["CN-BJ", "CN-GD"])
            let offender = Self.check(parallel, "cached_balances")["first"] as? [String: Any]
            #expect(offender?["province"] as? String == "CN-GD")
            // The same instant, the same findings, whatever the parallelism.
            let serialChecks = try JSONSerialization.data(withJSONObject: serial["checks"] ?? [], options: [.sortedKeys])
            let parallelChecks = try JSONSerialization.data(withJSONObject: parallel["checks"] ?? [], options: [.sortedKeys])
            #expect(serialChecks == parallelChecks)
            #expect(serial["rows_checked"] as? Int == parallel["rows_checked"] as? Int)
            // Province by province adds up to the whole: nothing of one province leaks into another's.
            let guangdongReplayed = Self.check(guangdong.1, "replay")["checked"] as? Int ?? 0
            #expect(beijingReplayed >= 3 && guangdongReplayed >= 10)
            #expect(Self.check(parallel, "replay")["checked"] as? Int == beijingReplayed + guangdongReplayed)
            #expect(Self.check(parallel, "conservation")["checked"] as? Int == 2)
            #expect(Self.check(beijing, "conservation")["checked"] as? Int == 1)
        }
    }

    @Test("evidence credited twice (its unique index dropped): completeness names the event")
    func evidenceCreditedTwice() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            try await Self.rogue(
                url,
                [
                    "DROP INDEX events_evidence_credited_once",
                    "UPDATE events SET evidence_source = 'sz_metro_card', evidence_ref = 'TXN-1' WHERE event_id = \(clean.metroEvent)",
                ])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "completeness", "evidence_ref", "TXN-1")
            Self.expectViolated(outcome, "guard_rails", "index", "events_evidence_credited_once")
            let offender = Self.check(outcome.1, "completeness")["first"] as? [String: Any] ?? [:]
            let named = Set(["event_id", "first_event_id"].compactMap { offender[$0] as? String })
            #expect(
                named.contains(clean.metroEvent.uuidString.lowercased()) && named.contains(clean.reversedEvent.uuidString.lowercased()), "\(offender)"
            )
        }
    }

    @Test("a second reversal of one award (its unique index dropped): reversals names it")
    func secondReversal() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            let second = try await Self.scalar(url, "SELECT nextval('ledger_transaction_ids')", as: Int64.self)
            try await Self.rogue(
                url,
                [
                    "DROP INDEX ledger_one_reversal_per_award",
                    """
                    INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e, rule_set_version, methodology, reverses_id, reason, actor)
                    SELECT t.province, \(second), 'reversal', t.citizen_id, a.last_seq + 1, t.event_id, t.points, t.grams_co2e, t.rule_set_version, t.methodology, t.reverses_id, 'again', 'rogue'
                    FROM ledger_transactions t JOIN citizen_accounts a ON a.province = t.province AND a.citizen_id = t.citizen_id
                    WHERE t.transaction_id = \(clean.reversalTransaction)
                    """,
                    "INSERT INTO ledger_entries (province, transaction_id, account, points) SELECT province, \(second), account, points FROM ledger_entries WHERE transaction_id = \(clean.reversalTransaction)",
                    """
                    UPDATE citizen_accounts a SET last_seq = last_seq + 1, balance_points = balance_points + t.points, balance_grams = balance_grams + t.grams_co2e
                    FROM ledger_transactions t WHERE t.transaction_id = \(clean.reversalTransaction) AND a.province = t.province AND a.citizen_id = t.citizen_id
                    """,
                ])
            try await services.ledger.seal()
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "reversals", "transaction_id", "\(second)")
        }
    }

    @Test("a reversal inflated past the balance: the history goes negative and caps_and_negative_balances names the account")
    func negativeBalanceInHistory() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            let account = "citizen:" + clean.citizenB.uuidString.lowercased()
            try await Self.rogue(
                url,
                [
                    "UPDATE ledger_entries SET points = -5000 WHERE transaction_id = \(clean.reversalTransaction) AND account = \(account)",
                    "UPDATE ledger_entries SET points = 5000 WHERE transaction_id = \(clean.reversalTransaction) AND account = 'issuance'",
                ])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "caps_and_negative_balances", "transaction_id", "\(clean.reversalTransaction)")
            Self.expectViolated(outcome, "caps_and_negative_balances", "citizen_id", clean.citizenB.uuidString.lowercased())
        }
    }

    @Test("an award naming a version not in force at its event: replay names the transaction")
    func versionNotInForce() async throws {
        try await F.withLedger { services, url in
            let clean = try await Self.buildClean(services, url: url)
            let later = try F.ruleSetDocument().replacingOccurrences(of: "version: 1", with: "version: 2")
                .replacingOccurrences(of: "effective_from: 2026-01-01T00:00:00+08:00", with: "effective_from: 2099-01-01T00:00:00+08:00")
            _ = try await services.ruleSets.publish(document: later, publishedBy: "test")
            // Version 2 computes the same award (same factors), so only "in force" can catch it.
            try await Self.rogue(url, ["UPDATE ledger_transactions SET rule_set_version = 2 WHERE transaction_id = \(clean.metroTransaction)"])
            let outcome = try await Self.audit(url)
            Self.expectViolated(outcome, "replay", "transaction_id", "\(clean.metroTransaction)")
        }
    }

    @Test("the chain truncated after a checkpoint: checkpoints catches it although the shorter chain replays")
    func truncatedChain() async throws {
        try await Self.withCheckpointedClean { services, url, _, file, environment in
            let head = try await Self.scalar(url, "SELECT max(chain_seq) FROM ledger_chain", as: Int64.self)
            try await Self.rogue(url, ["DELETE FROM ledger_chain WHERE chain_seq > \(head - 2)"])
            let outcome = try await Self.audit(url, ["--checkpoint", file], environment: environment)
            Self.expectViolated(outcome, "checkpoints", "file", file)
            #expect(Self.check(outcome.1, "hash_chain")["status"] as? String == "ok", "the remaining prefix is a valid chain")
        }
    }

    @Test("an audit while a real server keeps writing: every run is clean (one snapshot), as the service role writes")
    func auditWhileServing() async throws {
        try await ServedLedger.with { h in
            let stop = StopFlag()
            let writer = Task {
                for batch in 0..<2_000 where !stop.isSet {
                    let token = try await ServedLedger.token(UUID())
                    let events = (0..<10).map { slot in ServedLedger.event(start: Date().addingTimeInterval(-Double((batch * 10 + slot) * 600 + 60)))
                    }
                    #expect(try await h.push(events, token: token).status == 200)
                }
            }
            // Audits run while the writer is active (at least one batch landed before each).
            var audits = 0
            while audits < 3 {
                let before = try await h.count("SELECT count(*) FROM events")
                try await Poll.until("the writer lands another batch") { try await h.count("SELECT count(*) FROM events") > before }
                let (result, report) = try await Self.audit(h.url, ["--jobs", "2"])
                #expect(result.exitCode == 0, "\(result.stdout.prefix(2000))")
                #expect(report["snapshot"] as? String == "shared")
                audits += 1
            }
            stop.set()
            try await writer.value
        }
    }
}

/// A flag one task sets and others read.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .sequentiallyConsistent) }
    func set() { flag.store(true, ordering: .sequentiallyConsistent) }
}
