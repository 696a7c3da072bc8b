import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// Audit v2: edits the v1 audit let through (issue 12), each made exactly as a superuser
/// would, each named by a VIOLATED finding; v1 chains still verify.
@Suite("Audit v2: every stored fact is proven", .needsDatabase)
struct AuditV2Tests {
    typealias F = LedgerFixtures
    typealias A = AuditTests

    static func lower(_ id: UUID) -> String { id.uuidString.lowercased() }

    /// The clean ledger plus a stored rejection (the same receipt claimed by a fourth citizen), sealed.
    static func buildWithRejection(_ services: TanhuiServices, url: String) async throws -> (AuditTests.Clean, rejected: UUID) {
        let clean = try await A.buildClean(services, url: url)
        let rejected = UUID()
        let verdicts = try await services.ledger.submit(
            [F.metro(id: rejected, at: F.base.addingTimeInterval(8 * 3600), evidence: "TXN-1")],
            citizen: UUID(), device: "d", receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
        #expect(verdicts.map(\.status) != [.accepted], "a receipt credited once is not credited again")
        try await services.ledger.seal()
        return (clean, rejected)
    }

    @Test("clean: events, transactions and rule sets are sealed by v2 links, and every check holds")
    func cleanV2() async throws {
        try await F.withLedger { services, url in
            _ = try await Self.buildWithRejection(services, url: url)
            #expect(
                try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE format = 2 AND record = 'event'")
                    == (try await F.count(url, "SELECT count(*) FROM events")))
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE format = 2 AND record = 'rule_set'") == 1)
            #expect(
                try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE format = 2 AND record = 'transaction'")
                    == (try await F.count(url, "SELECT count(*) FROM ledger_transactions")))
            let (result, report) = try await A.audit(url)
            #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
            #expect(A.check(report, "overlapping_trips")["status"] as? String == "ok")
            #expect((A.check(report, "overlapping_trips")["checked"] as? Int ?? 0) >= 3)
            #expect((A.check(report, "chain_order")["checked"] as? Int ?? 0) >= 15)
        }
    }

    @Test("(1) a credited event's evidence_ref changed: hash_chain names the event")
    func evidenceRefEdited() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildWithRejection(services, url: url)
            try await A.rogue(url, ["UPDATE events SET evidence_ref = 'TXN-2' WHERE event_id = \(clean.reversedEvent)"])
            A.expectViolated(try await A.audit(url), "hash_chain", "event_id", Self.lower(clean.reversedEvent))
        }
    }

    @Test("(1) a rejected event's status, code and message rewritten: hash_chain names the event")
    func rejectedVerdictEdited() async throws {
        try await F.withLedger { services, url in
            let (_, rejected) = try await Self.buildWithRejection(services, url: url)
            try await A.rogue(url, ["UPDATE events SET message = 'looked fine' WHERE event_id = \(rejected)"])
            A.expectViolated(try await A.audit(url), "hash_chain", "event_id", Self.lower(rejected))
        }
    }

    @Test("(1) an accepted event's instant moved by a millisecond (the award still replays): hash_chain names the event")
    func eventInstantEdited() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildWithRejection(services, url: url)
            try await A.rogue(url, ["UPDATE events SET received_at = received_at + interval '1 millisecond' WHERE event_id = \(clean.metroEvent)"])
            let outcome = try await A.audit(url)
            A.expectViolated(outcome, "hash_chain", "event_id", Self.lower(clean.metroEvent))
            #expect(A.check(outcome.1, "replay")["status"] as? String == "ok", "only the chain can see this edit")
        }
    }

    @Test("(2) a reversal's reason and actor, an award's caps_applied and multiplier rewritten: hash_chain names each transaction")
    func transactionColumnsEdited() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildWithRejection(services, url: url)
            let capped = try await A.scalar(url, "SELECT min(transaction_id) FROM ledger_transactions WHERE caps_applied <> '{}'", as: Int64.self)
            try await A.rogue(
                url,
                [
                    "UPDATE ledger_transactions SET reason = 'customer request', actor = 'admin:other' WHERE transaction_id = \(clean.reversalTransaction)"
                ])
            A.expectViolated(try await A.audit(url), "hash_chain", "transaction_id", "\(clean.reversalTransaction)")
            try await A.rogue(
                url,
                [
                    "UPDATE ledger_transactions SET reason = 'card reported stolen', actor = 'admin:test' WHERE transaction_id = \(clean.reversalTransaction)"
                ])
            #expect(try await A.audit(url).0.exitCode == 0, "restoring the columns restores the hash")
            try await A.rogue(url, ["UPDATE ledger_transactions SET caps_applied = '{}', multiplier = '2' WHERE transaction_id = \(capped)"])
            A.expectViolated(try await A.audit(url), "hash_chain", "transaction_id", "\(capped)")
        }
    }

    @Test("(2) an award's points_before_caps and campaign rewritten: hash_chain names the transaction")
    func awardProvenanceEdited() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildWithRejection(services, url: url)
            try await A.rogue(
                url,
                [
                    "UPDATE ledger_transactions SET points_before_caps = points_before_caps + 1, campaign = 'launch' WHERE transaction_id = \(clean.metroTransaction)"
                ])
            A.expectViolated(try await A.audit(url), "hash_chain", "transaction_id", "\(clean.metroTransaction)")
        }
    }

    @Test("(3) a rule-set document rewritten together with its content_sha256: hash_chain names the version")
    func ruleSetRewrittenWithHash() async throws {
        try await F.withLedger { services, url in
            _ = try await Self.buildWithRejection(services, url: url)
            let doctored = "document || E'\\n# a future x10 campaign\\n'"
            try await A.rogue(
                url,
                [
                    PostgresQuery(
                        stringLiteral: """
                            UPDATE rule_sets SET document = \(doctored), content_sha256 = encode(sha256(convert_to(\(doctored), 'UTF8')), 'hex')
                            WHERE province = 'CN-GD' AND version = 1
                            """)
                ])
            let outcome = try await A.audit(url)
            A.expectViolated(outcome, "hash_chain", "rule_set_version", "1")
            #expect(A.check(outcome.1, "replay")["status"] as? String == "ok", "the doctored document still replays and matches its hash")
        }
    }

    @Test("(4) guard_rails: a trigger for UPDATE OF one column, one with WHEN, one AFTER, and a function body that never raises")
    func hollowTriggers() async throws {
        try await F.withLedger { services, url in
            _ = try await A.buildClean(services, url: url)
            try await A.rogue(
                url,
                [
                    "DROP TRIGGER events_append_only ON events",
                    "CREATE TRIGGER events_append_only BEFORE UPDATE OF device_id ON events FOR EACH ROW EXECUTE FUNCTION tanhui_reject_change()",
                    "DROP TRIGGER ledger_entries_append_only ON ledger_entries",
                    "CREATE TRIGGER ledger_entries_append_only AFTER UPDATE OF points ON ledger_entries FOR EACH ROW WHEN (false) EXECUTE FUNCTION tanhui_reject_change()",
                    "DROP TRIGGER rule_sets_append_only ON rule_sets",
                    "CREATE TRIGGER rule_sets_append_only AFTER UPDATE OR DELETE ON rule_sets FOR EACH STATEMENT EXECUTE FUNCTION tanhui_reject_change()",
                ])
            // UPDATE on events now succeeds (as the database owner, triggers enabled). Findings: events
            // (type, column list), ledger_entries (type, column list, WHEN: the worst), rule_sets (type).
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withConnection { try $0.query("UPDATE events SET message = message") }
            await pool.shutdown()
            let outcome = try await A.audit(url)
            A.expectViolated(outcome, "guard_rails", "trigger", "events_append_only")
            let details = ["first", "worst", "last"].compactMap { (A.check(outcome.1, "guard_rails")[$0] as? [String: Any]) }
            #expect(A.check(outcome.1, "guard_rails")["count"] as? Int == 3, "\(details)")
            A.expectViolated(outcome, "guard_rails", "trigger", "ledger_entries_append_only")
            A.expectViolated(outcome, "guard_rails", "trigger", "rule_sets_append_only")
        }
        try await F.withLedger { services, url in
            _ = try await A.buildClean(services, url: url)
            try await A.rogue(
                url,
                [
                    """
                    CREATE OR REPLACE FUNCTION tanhui_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF false THEN RAISE EXCEPTION 'never'; END IF;
                        RETURN NEW;
                    END;
                    $$
                    """
                ])
            A.expectViolated(try await A.audit(url), "guard_rails", "function", "tanhui_reject_change")
        }
    }

    @Test(
        "(5) absurd amounts: a 64-bit-overflowing balance, a conservation sum beyond bigint, Int64.min points — findings, exit 1, never a crash or exit 2"
    )
    func absurdValues() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let citizen = "citizen:" + Self.lower(clean.citizenC)
            try await A.rogue(
                url,
                [
                    "UPDATE ledger_entries SET points = 9223372036854775807 WHERE account = \(citizen)",
                    "UPDATE ledger_transactions SET points = -9223372036854775808 WHERE transaction_id = \(clean.reversalTransaction)",
                    "UPDATE events SET distance_m = 9223372036854775807 WHERE event_id = \(clean.metroEvent)",
                    "UPDATE cap_usage SET points = 9223372036854775807 WHERE citizen_id = \(clean.citizenA)",
                    "UPDATE citizen_accounts SET balance_points = -9223372036854775808, last_seq = 9223372036854775807 WHERE citizen_id = \(clean.citizenB)",
                ])
            let outcome = try await A.audit(url)
            A.expectViolated(outcome, "conservation", "account", "issuance")
            A.expectViolated(outcome, "caps_and_negative_balances", "citizen_id", Self.lower(clean.citizenC))
            A.expectViolated(outcome, "reversals", "transaction_id", "\(clean.reversalTransaction)")
            A.expectViolated(outcome, "replay", "event_id", Self.lower(clean.metroEvent))
            A.expectViolated(outcome, "cached_balances", "citizen_id", Self.lower(clean.citizenB))
        }
    }

    @Test("(6) two accepted overlapping trips of one citizen (exclusion constraint dropped): overlapping_trips names the later trip")
    func overlappingTrips() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let trips = try await A.scalar(
                url,
                """
                SELECT string_agg(event_id::text, ',' ORDER BY occurred_at) FROM events
                WHERE citizen_id = \(clean.citizenA) AND status = 'accepted' AND occupies_interval
                """, as: String.self
            ).split(separator: ",").map(String.init)
            #expect(trips.count >= 2)
            try await A.rogue(
                url,
                [
                    "ALTER TABLE events DROP CONSTRAINT events_no_overlapping_trips",
                    PostgresQuery(
                        stringLiteral:
                            "UPDATE events SET occurred_at = (SELECT occurred_at + interval '5 minutes' FROM events WHERE event_id = '\(trips[0])') WHERE event_id = '\(trips[1])'"
                    ),
                ])
            A.expectViolated(try await A.audit(url), "overlapping_trips", "event_id", trips[1])
        }
    }

    @Test(
        "(6) --since: a trip appended after the checkpoint and moved onto an earlier one while the exclusion index stands (a returning citizen's history read by key; a citizen new since the checkpoint from the new rows), then with it dropped (semi-join): overlapping_trips names it every way",
        arguments: [true, false]
    )
    func overlappingTripsSince(returningCitizen: Bool) async throws {
        try await A.withCheckpointedClean { services, url, clean, file, environment in
            let late = UUID()
            // A returning citizen's earlier trip is before the checkpoint; a new citizen's is new too.
            let citizen = returningCitizen ? clean.citizenA : UUID()
            let earlier: [SubmissionItem] = returningCitizen ? [] : [F.bike(at: F.base.addingTimeInterval(6 * 3600))]
            let verdicts = try await services.ledger.submit(
                earlier + [F.bike(id: late, at: F.base.addingTimeInterval(12 * 3600))], citizen: citizen, device: "a",
                receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            #expect(verdicts.map(\.status) == Array(repeating: .accepted, count: earlier.count + 1))
            try await services.ledger.seal()
            let (cleanResult, _) = try await A.audit(url, ["--since", file], environment: environment)
            #expect(cleanResult.exitCode == 0, "\(cleanResult.stdout.prefix(3000))")

            // The range function briefly maps every trip to the empty range, so the constraint admits
            // the move and its index stays valid: the audit must not trust the constraint. The
            // function is put back from its own stored definition.
            let rangeFunction = "tanhui_trip_range(timestamptz, timestamptz)"
            let shipped = try await A.scalar(url, "SELECT pg_get_functiondef(\(rangeFunction)::regprocedure)", as: String.self)
            try await A.rogue(
                url,
                [
                    PostgresQuery(
                        stringLiteral:
                            """
                            CREATE OR REPLACE FUNCTION tanhui_trip_range(occurred timestamptz, ended timestamptz) RETURNS tstzrange
                            LANGUAGE sql IMMUTABLE AS $$ SELECT 'empty'::tstzrange $$
                            """),
                    PostgresQuery(
                        stringLiteral: """
                            UPDATE events SET occurred_at = o.occurred_at + interval '5 minutes', ended_at = o.occurred_at + interval '15 minutes'
                            FROM (SELECT min(occurred_at) AS occurred_at FROM events WHERE citizen_id = '\(citizen)') o WHERE event_id = '\(late)'
                            """),
                    PostgresQuery(stringLiteral: shipped),
                ])
            #expect(try await A.scalar(url, "SELECT pg_get_functiondef(\(rangeFunction)::regprocedure)", as: String.self) == shipped)
            #expect(
                try await A.scalar(
                    url, "SELECT count(*) FROM pg_index WHERE indexrelid = 'events_no_overlapping_trips'::regclass AND indisvalid", as: Int64.self)
                    == 1)
            A.expectViolated(try await A.audit(url, ["--since", file], environment: environment), "overlapping_trips", "event_id", Self.lower(late))
            try await A.rogue(url, ["ALTER TABLE events DROP CONSTRAINT events_no_overlapping_trips"])
            A.expectViolated(try await A.audit(url, ["--since", file], environment: environment), "overlapping_trips", "event_id", Self.lower(late))
        }
    }

    @Test("(6) a forged transaction backdated by an hour, then sealed: chain_order names it (the chain itself replays)")
    func backdatedTransaction() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let forged = try await A.forgeAward(url, citizen: clean.citizenC, points: 0, grams: 0, backdatedSeconds: 3600)
            try await services.ledger.seal()
            let outcome = try await A.audit(url)
            A.expectViolated(outcome, "chain_order", "transaction_id", "\(forged)")
            #expect(A.check(outcome.1, "hash_chain")["status"] as? String == "ok")
        }
    }

    @Test(
        "the chain split between workers gives one pass's report: clean, a backdated transaction in a later range, an early link that puts every later one out of order"
    )
    func chainSplitBetweenWorkers() async throws {
        try await F.withLedger { services, url in
            let (clean, _) = try await Self.buildWithRejection(services, url: url)
            let links = try await F.count(url, "SELECT count(*) FROM ledger_chain")
            #expect(links >= 15, "a chain long enough for three ranges of at least 4 links")
            // One pass, and three workers with the chain in three ranges: the same report.
            func split(_ label: String) async throws -> (CommandResult, [String: Any]) {
                let (one, serial) = try await A.audit(url, ["--jobs", "1"])
                let (three, parallel) = try await A.audit(url, ["--jobs", "3", "--chain-range-links", "4"])
                #expect(one.exitCode == three.exitCode, "\(label)")
                let serialChecks = try JSONSerialization.data(withJSONObject: serial["checks"] ?? [], options: [.sortedKeys])
                let parallelChecks = try JSONSerialization.data(withJSONObject: parallel["checks"] ?? [], options: [.sortedKeys])
                #expect(serialChecks == parallelChecks, "\(label): \(String(decoding: parallelChecks, as: UTF8.self).prefix(3000))")
                #expect(serial["rows_checked"] as? Int == parallel["rows_checked"] as? Int, "\(label)")
                #expect((parallel["chain_ranges"] as? [String: Any])?["split"] as? Int == 3, "\(label)")
                return (three, parallel)
            }
            func replayed(_ report: [String: Any]) -> Int? { (report["chain_ranges"] as? [String: Any])?["replayed"] as? Int }
            let (cleanRun, cleanReport) = try await split("clean")
            #expect(cleanRun.exitCode == 0, "\(cleanRun.stdout.prefix(2000))")
            #expect(replayed(cleanReport) == 0, "a chain in order: every range's assumed start was right")
            #expect(A.check(cleanReport, "hash_chain")["checked"] as? Int == links)

            // Found only if the last range starts from the created_at of the links before it.
            let forged = try await A.forgeAward(url, citizen: clean.citizenC, points: 0, grams: 0, backdatedSeconds: 3600)
            try await services.ledger.seal()
            let backdated = try await split("backdated")
            A.expectViolated(backdated, "chain_order", "transaction_id", "\(forged)")
            #expect(replayed(backdated.1) == 0, "the latest created_at before a range comes from the transactions below it")

            // An early event link's seal id raised far beyond the others': one pass finds every
            // later link out of order; a later range sees that only if it is replayed from what
            // the ranges before it left.
            let raised = try await F.count(
                url, "SELECT min(chain_seq)::int FROM ledger_chain WHERE province = 'CN-GD' AND record = 'event' AND chain_seq >= 2")
            #expect(raised < links / 3, "the edited link lies in the first range")
            try await A.rogue(
                url, ["UPDATE ledger_chain SET seal_id = seal_id + 1000000000 WHERE province = 'CN-GD' AND chain_seq = \(raised)"])
            let reordered = try await split("reordered")
            #expect((A.check(reordered.1, "chain_order")["count"] as? Int ?? 0) >= links - raised, "\(A.check(reordered.1, "chain_order"))")
            #expect((replayed(reordered.1) ?? 0) >= 1, "the ranges after the edited link were replayed from the true state")
        }
    }

    @Test("an event stored but never sealed (a rejected claim, so no transaction): unsealed_backlog names the event by its age")
    func unsealedEvent() async throws {
        try await F.withLedger { services, url in
            _ = try await A.buildClean(services, url: url)
            let rejected = UUID()
            let verdicts = try await services.ledger.submit(
                [F.metro(id: rejected, at: F.base.addingTimeInterval(8 * 3600), evidence: "TXN-1")],
                citizen: UUID(), device: "d", receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            #expect(verdicts.map(\.status) != [.accepted])
            #expect(
                try await F.count(
                    url,
                    "SELECT count(*) FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM ledger_chain c WHERE c.transaction_id = t.transaction_id)"
                ) == 0)
            let outcome = try await A.audit(url, ["--seal-bound", "0"])
            A.expectViolated(outcome, "unsealed_backlog", "event_id", Self.lower(rejected))
            #expect(try await A.audit(url, ["--seal-bound", "864000000"]).0.exitCode == 0, "within the bound it is no finding")
        }
    }

    @Test(
        "infinite instants in tampered rows (a transaction's created_at, an event's received_at, an unsealed forgery's created_at): findings, exit 1, never exit 2"
    )
    func infiniteInstants() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let forged = try await A.forgeAward(url, citizen: clean.citizenC, points: 0, grams: 0)
            try await A.rogue(
                url,
                [
                    "UPDATE ledger_transactions SET created_at = 'infinity' WHERE transaction_id = \(clean.reversalTransaction)",
                    "UPDATE ledger_transactions SET created_at = '-infinity' WHERE transaction_id = \(forged)",
                    "UPDATE events SET received_at = 'infinity' WHERE event_id = \(clean.metroEvent)",
                ])
            let outcome = try await A.audit(url)
            #expect(outcome.0.exitCode == 1, "\(outcome.0.stderr.prefix(500))")
            A.expectViolated(outcome, "chain_order", "transaction_id", "\(clean.reversalTransaction)")
            A.expectViolated(outcome, "unsealed_backlog", "transaction_id", "\(forged)")
            A.expectViolated(outcome, "replay", "event_id", Self.lower(clean.metroEvent))
            A.expectViolated(outcome, "hash_chain", "event_id", Self.lower(clean.metroEvent))
        }
    }

    @Test("a chain sealed in v1 before the migration keeps verifying; v2 links follow it; a v1-sealed transaction edited is still caught")
    func v1ChainStillVerifies() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            // Rebuild the province chain as a v1 deployment sealed it, and renumber events and
            // rule sets after every transaction, as migration 0004 does.
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withTransaction { connection in
                try connection.query("SET session_replication_role = replica")
                try connection.query("DELETE FROM ledger_chain")
                try connection.query("UPDATE events SET seal_id = nextval('ledger_transaction_ids')")
                try connection.query("UPDATE rule_sets SET seal_id = nextval('ledger_transaction_ids')")
                // Governance records (migration 0009) are numbered after those, as that migration does.
                try connection.query("UPDATE ruleset_publications SET seal_id = nextval('ledger_transaction_ids')")
                var previous = LedgerChain.genesisHash
                var seq: Int64 = 0
                for row in try connection.query(
                    "SELECT \(LedgerChain.rowColumns) FROM ledger_transactions t WHERE t.province = 'CN-GD' ORDER BY t.transaction_id"
                ).rows {
                    let sealed = try LedgerChain.decodeRow(row)
                    let hash = LedgerChain.link(previous: previous, row: sealed)
                    seq += 1
                    try connection.query(
                        """
                        INSERT INTO ledger_chain (province, chain_seq, transaction_id, previous_hash, hash) VALUES ('CN-GD', \(seq), \(sealed.transactionID), \(previous), \(hash))
                        """)
                    previous = hash
                }
            }
            await pool.shutdown()
            try await services.ledger.seal()
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE format = 1") >= 10)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE format = 2") >= 10)
            let (result, _) = try await A.audit(url)
            #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
            try await A.rogue(
                url, ["UPDATE ledger_entries SET points = points + 1 WHERE transaction_id = \(clean.metroTransaction) AND account <> 'issuance'"])
            A.expectViolated(try await A.audit(url), "hash_chain", "transaction_id", "\(clean.metroTransaction)")
        }
    }

    @Test("ledger show pages through a history of more than 1,000 transactions: every line, the true final balance")
    func ledgerShowPages() async throws {
        try await F.withLedger { _, url in
            let citizen = UUID()
            let count = 2_345
            let pool = TestDatabase.makePool(url: url, size: 1)
            try await pool.withTransaction { connection in
                try connection.query(
                    "INSERT INTO citizen_accounts (province, citizen_id, balance_points, last_seq) VALUES ('CN-GD', \(citizen), \(Int64(count) * 3), \(Int64(count)))"
                )
                try connection.query(
                    """
                    INSERT INTO ledger_transactions (province, transaction_id, kind, citizen_id, citizen_seq, event_id, points, grams_co2e, rule_set_version, methodology)
                    SELECT 'CN-GD', nextval('ledger_transaction_ids'), 'award', \(citizen), i, gen_random_uuid(), 3, 30, 1, 'm' FROM generate_series(1, \(count)) i
                    """)
            }
            await pool.shutdown()
            let shown = try await CommandRunner.tanhui(["ledger", "show", "--citizen", citizen.uuidString], databaseURL: url)
            #expect(shown.exitCode == 0, "\(shown.stderr)")
            let lines = shown.stdout.split(separator: "\n")
            #expect(lines.count == count)
            #expect(lines.last?.contains("#\(count) ") == true)
            #expect(lines.last?.contains("balance \(count * 3) ") == true, "\(lines.last ?? "")")
            #expect(Set(lines.compactMap { $0.split(separator: " ").dropFirst(1).first }).count == count, "no transaction shown twice")
        }
    }

    static func violated(_ report: [String: Any]) -> [String] {
        ((report["checks"] as? [[String: Any]]) ?? []).filter { $0["status"] as? String == "violated" }.compactMap { $0["id"] as? String }
    }

    @Test(
        "incremental audit: --since each checkpoint agrees with the full audit; tampering after a checkpoint is caught by both, an edited summary by --since, an edit before it by the full audit"
    )
    func incremental() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            let environment = A.checkpointEnvironment()
            let first = A.checkpointFile()
            let second = A.checkpointFile()
            defer { for file in [first, second] { try? FileManager.default.removeItem(atPath: file) } }
            let receivedAt = F.base.addingTimeInterval(86_400)
            try await A.exportCheckpoint(url, to: first, environment: environment)
            #expect(try String(contentsOfFile: first, encoding: .utf8).hasPrefix("tanhui-checkpoint v2\n"))

            // After the first checkpoint: A rides again the same day (the day's bike cap, reached
            // before the checkpoint, must carry over from the summary), a new citizen, an old award reversed.
            _ = try await services.ledger.submit(
                [F.bike(at: F.base.addingTimeInterval(-3600))], citizen: clean.citizenA, device: "a", receivedAt: receivedAt, sentAt: nil)
            _ = try await services.ledger.submit([F.waste(at: F.base)], citizen: UUID(), device: "d", receivedAt: receivedAt, sentAt: nil)
            _ = try await services.ledger.reverse(event: clean.metroEvent, province: "CN-GD", reason: "duplicate", actor: "admin:test")
            try await services.ledger.seal()
            try await A.exportCheckpoint(url, to: second, environment: environment)
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(7 * 3600))], citizen: clean.citizenB, device: "b", receivedAt: receivedAt, sentAt: nil)
            try await services.ledger.seal()

            let (full, fullReport) = try await A.audit(url, [], environment: environment)
            #expect(full.exitCode == 0, "\(full.stdout.prefix(3000))")
            for file in [first, second] {
                let (result, report) = try await A.audit(url, ["--since", file], environment: environment)
                #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
                #expect((report["rows_checked"] as? Int ?? 0) < (fullReport["rows_checked"] as? Int ?? 0), "only what came after is read")
                #expect((A.check(report, "replay")["checked"] as? Int ?? 0) >= 1)
            }

            // Tampering after the second checkpoint: the full audit and both incremental ones see the same violations.
            let last = try await A.scalar(url, "SELECT max(transaction_id) FROM ledger_transactions", as: Int64.self)
            try await A.rogue(url, ["UPDATE ledger_entries SET points = points + 7 WHERE transaction_id = \(last) AND account <> 'issuance'"])
            let (tamperedResult, tamperedFull) = try await A.audit(url, [], environment: environment)
            A.expectViolated((tamperedResult, tamperedFull), "transactions_balance", "transaction_id", "\(last)")
            for file in [first, second] {
                let outcome = try await A.audit(url, ["--since", file], environment: environment)
                A.expectViolated(outcome, "transactions_balance", "transaction_id", "\(last)")
                #expect(Self.violated(outcome.1) == Self.violated(tamperedFull), "\(Self.violated(outcome.1)) vs \(Self.violated(tamperedFull))")
            }
            try await A.rogue(url, ["UPDATE ledger_entries SET points = points - 7 WHERE transaction_id = \(last) AND account <> 'issuance'"])

            // The summary the first checkpoint signed, edited: --since refuses it.
            try await A.rogue(url, ["UPDATE ledger_checkpoint_states SET balance_points = balance_points + 1 WHERE citizen_id = \(clean.citizenA)"])
            A.expectViolated(try await A.audit(url, ["--since", first], environment: environment), "checkpoints", "file", first)
            try await A.rogue(url, ["UPDATE ledger_checkpoint_states SET balance_points = balance_points - 1 WHERE citizen_id = \(clean.citizenA)"])

            // An edit before the first checkpoint: the full audit names it; --since does not read it (by design).
            try await A.rogue(
                url, ["UPDATE ledger_entries SET points = points + 5 WHERE transaction_id = \(clean.reversalTransaction) AND account = 'issuance'"])
            A.expectViolated(
                try await A.audit(url, [], environment: environment), "transactions_balance", "transaction_id", "\(clean.reversalTransaction)")
            #expect(try await A.audit(url, ["--since", second], environment: environment).0.exitCode == 0)

            // No trusted key: the audit cannot run (exit 2), never a silent pass.
            let noKey = try await CommandRunner.tanhui(["audit", "--since", first], databaseURL: url)
            #expect(noKey.exitCode == 2)
        }
    }
    @Test(
        "incremental audit: the report rollup is checked against the copy the checkpoint signed plus what was folded since; an edited cell or a missing citizen of a new record is caught by --since and the full audit, an edited copy by --since"
    )
    func incrementalReports() async throws {
        try await F.withLedger { services, url in
            let clean = try await A.buildClean(services, url: url)
            _ = try await services.reports.advance(province: "CN-GD")
            let environment = A.checkpointEnvironment()
            let file = A.checkpointFile()
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await A.exportCheckpoint(url, to: file, environment: environment)
            let note = try String(contentsOfFile: file, encoding: .utf8)
            #expect(note.split(separator: "\n").contains { $0.hasPrefix("reports ") && $0.count == "reports ".count + 64 }, "\(note)")
            let copied = try await A.scalar(url, "SELECT count(*) FROM ledger_checkpoint_rollup", as: Int64.self)
            #expect(copied >= 2, "the copy holds the rollup's cells")

            // After the checkpoint: a new cell (a later day), an old cell again (A's bike the same
            // day), an old award reversed (its cell's grams change); partly folded, then all.
            let receivedAt = F.base.addingTimeInterval(86_400)
            _ = try await services.ledger.submit(
                [F.bike(at: F.base.addingTimeInterval(-3600))], citizen: clean.citizenA, device: "a", receivedAt: receivedAt, sentAt: nil)
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(2 * 86_400))], citizen: UUID(), device: "d",
                receivedAt: receivedAt.addingTimeInterval(2 * 86_400),
                sentAt: nil)
            _ = try await services.ledger.reverse(event: clean.metroEvent, province: "CN-GD", reason: "duplicate", actor: "admin:test")
            try await services.ledger.seal()
            _ = try await services.reports.advance(province: "CN-GD")

            let (full, fullReport) = try await A.audit(url, [], environment: environment)
            #expect(full.exitCode == 0, "\(full.stdout.prefix(3000))")
            let (since, sinceReport) = try await A.audit(url, ["--since", file], environment: environment)
            #expect(since.exitCode == 0, "\(since.stdout.prefix(3000))")
            #expect((A.check(sinceReport, "reports_match_ledger")["checked"] as? Int ?? 0) >= 3)
            let sinceChecked = A.check(sinceReport, "reports_match_ledger")["checked"] as? Int ?? 0
            #expect(sinceChecked < (A.check(fullReport, "reports_match_ledger")["checked"] as? Int ?? 0), "citizens: only the new records' are read")
            #expect(sinceChecked > Int(copied), "every cell of the copy plus what was folded since is compared")

            // An old cell edited after the checkpoint: both audits name it.
            let day = try await A.scalar(url, "SELECT min(day)::text FROM ledger_checkpoint_rollup", as: String.self)
            let edit: PostgresQuery =
                "UPDATE report_rollup SET accepted = accepted + 1 WHERE day = (SELECT min(day) FROM ledger_checkpoint_rollup) AND kind = (SELECT min(kind) FROM ledger_checkpoint_rollup WHERE day = (SELECT min(day) FROM ledger_checkpoint_rollup))"
            try await A.rogue(url, [edit])
            A.expectViolated(try await A.audit(url, [], environment: environment), "reports_match_ledger", "day", day)
            A.expectViolated(try await A.audit(url, ["--since", file], environment: environment), "reports_match_ledger", "day", day)
            try await A.rogue(
                url,
                [
                    "UPDATE report_rollup SET accepted = accepted - 1 WHERE day = (SELECT min(day) FROM ledger_checkpoint_rollup) AND kind = (SELECT min(kind) FROM ledger_checkpoint_rollup WHERE day = (SELECT min(day) FROM ledger_checkpoint_rollup))"
                ])

            // A citizen a new record counts, removed from its cell: both audits name it.
            try await A.rogue(url, ["DELETE FROM report_citizens WHERE citizen_id = \(clean.citizenA) AND kind = 'bike_ride'"])
            A.expectViolated(try await A.audit(url, [], environment: environment), "reports_match_ledger", "table", "report_citizens")
            A.expectViolated(try await A.audit(url, ["--since", file], environment: environment), "reports_match_ledger", "table", "report_citizens")
            _ = try await services.reports.advance(province: "CN-GD")  // folds nothing: the row stays missing
            try await A.rogue(
                url,
                [
                    """
                    INSERT INTO report_citizens SELECT DISTINCT province, (occurred_at AT TIME ZONE INTERVAL '08:00')::date, kind,
                        coalesce(mode, material, ''), coalesce(district, ''), citizen_id
                    FROM events WHERE citizen_id = \(clean.citizenA) AND kind = 'bike_ride' AND status = 'accepted'
                    """
                ])
            #expect(try await A.audit(url, [], environment: environment).0.exitCode == 0)

            // A citizen counted in an old cell who never acted there: the full audit names it;
            // --since, which reads only what the new records touch, does not (by design).
            try await A.rogue(
                url,
                [
                    "INSERT INTO report_citizens SELECT province, day, kind, variant, district, \(UUID())::uuid FROM report_citizens WHERE day = \(day)::date LIMIT 1"
                ])
            A.expectViolated(try await A.audit(url, [], environment: environment), "reports_match_ledger", "table", "report_citizens")
            #expect(try await A.audit(url, ["--since", file], environment: environment).0.exitCode == 0)
            try await A.rogue(
                url, ["DELETE FROM report_citizens WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.citizen_id = report_citizens.citizen_id)"])
            #expect(try await A.audit(url, [], environment: environment).0.exitCode == 0)

            // The copy edited (so that it would hide the edit above): --since says the copy no
            // longer verifies, recomputes the rollup from all history, and still names the cell.
            try await A.rogue(url, [edit, "UPDATE ledger_checkpoint_rollup SET accepted = accepted + 1 WHERE day = \(day)::date"])
            let edited = try await A.audit(url, ["--since", file], environment: environment)
            A.expectViolated(edited, "checkpoints", "file", file)
            A.expectViolated(edited, "reports_match_ledger", "day", day)

            let evidenced = UUID()
            // Evidence: --since probes the new evidence keys in the unique index; with the index
            // dropped (which a double credit needs), it scans instead and still names the key.
            _ = try await services.ledger.submit(
                [F.metro(id: evidenced, at: F.base.addingTimeInterval(3 * 86_400), evidence: "TXN-AFTER")], citizen: UUID(), device: "e",
                receivedAt: receivedAt.addingTimeInterval(3 * 86_400), sentAt: nil)
            try await services.ledger.seal()
            _ = try await services.reports.advance(province: "CN-GD")
            let probed = try await A.audit(url, ["--since", file], environment: environment)
            #expect(A.check(probed.1, "completeness")["status"] as? String == "ok", "a new evidence key probed in the index is credited once")
            let watermark = try A.watermark(ofCheckpoint: file)
            let old = try await A.scalar(
                url,
                "SELECT evidence_ref FROM events WHERE status = 'accepted' AND evidence_source IS NOT NULL AND seal_id <= \(watermark) ORDER BY seal_id LIMIT 1",
                as: String.self)
            try await A.rogue(
                url,
                [
                    "DROP INDEX events_evidence_credited_once",
                    """
                    UPDATE events SET evidence_source = o.evidence_source, evidence_ref = o.evidence_ref
                    FROM (SELECT evidence_source, evidence_ref FROM events WHERE evidence_ref = \(old)) o
                    WHERE events.event_id = (SELECT event_id FROM events WHERE status = 'accepted' AND evidence_source IS NOT NULL AND seal_id > \(watermark)
                                             ORDER BY seal_id DESC LIMIT 1)
                    """,
                ])
            A.expectViolated(try await A.audit(url, ["--since", file], environment: environment), "completeness", "evidence_ref", old)

            // A second award of a new event (its unique index dropped, so --since scans): named.
            try await A.rogue(
                url,
                [
                    "DROP INDEX ledger_one_award_per_event",
                    A.secondAward(of: evidenced),
                ])
            A.expectViolated(
                try await A.audit(url, ["--since", file], environment: environment), "completeness", "event_id", evidenced.uuidString.lowercased())
        }
    }
}
