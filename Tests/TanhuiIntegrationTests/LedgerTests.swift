import Crypto
import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

@Suite("Ledger: exactly-once awards, caps, reversals, tamper evidence", .needsDatabase)
struct LedgerTests {
    typealias F = LedgerFixtures

    @Test("an award lands as a balanced double-entry transaction and the balance follows")
    func awardIsDoubleEntry() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            let verdicts = try await services.ledger.submit(
                [F.metro(at: F.base)], citizen: citizen, device: "phone-1", receivedAt: F.base.addingTimeInterval(3600), sentAt: nil)
            #expect(verdicts.map(\.status) == [.accepted])
            #expect(verdicts[0].award == AwardSummary(gramsCO2e: 579, points: 57, province: "CN-GD", ruleSetVersion: 1, capped: false))
            #expect(try await services.ledger.balance(citizen: citizen, province: "CN-GD") == (57, 579))
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_entries") == 2)
            #expect(try await F.count(url, "SELECT sum(points)::int FROM ledger_entries") == 0)
            #expect(try await F.count(url, "SELECT points::int FROM ledger_entries WHERE account = 'issuance'") == -57)
        }
    }

    @Test("the sealer's backlog: unsealed transactions per province with the oldest's age, then none once sealed")
    func unsealedBacklog() async throws {
        try await F.withLedger { services, url in
            #expect(try await services.ledger.unsealedBacklog().isEmpty)
            let citizen = UUID()
            let verdicts = try await services.ledger.submit(
                [F.metro(at: F.base), F.waste(at: F.base.addingTimeInterval(7200))], citizen: citizen, device: "phone-1",
                receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            #expect(verdicts.map(\.status) == [.accepted, .accepted])
            let pending = try await services.ledger.unsealedBacklog()
            #expect(pending.map(\.province) == ["CN-GD"] && pending.first?.unsealed == 2, "\(pending)")
            #expect((0..<3600).contains(pending.first?.oldestSeconds ?? -1), "\(pending)")
            try await services.ledger.seal()
            #expect(try await services.ledger.unsealedBacklog().isEmpty)
            // One more award after the head: counted from the head on, not from the start.
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(4 * 3600))], citizen: citizen, device: "phone-1",
                receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            #expect(try await services.ledger.unsealedBacklog().first?.unsealed == 1)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions") == 3)
        }
    }

    /// An unsummarized BRIN range matches every query: without autosummarize every seal-id
    /// range read (sealer polls, the audit's chain chunks) read the whole tail since the last
    /// vacuum (at 10M entries, 503 ms per chunk instead of 18 ms).
    @Test("the seal-id BRIN index is summarized as its ranges fill (migration 0015: autosummarize)")
    func sealIDIndexSummarizes() async throws {
        try await F.withLedger { _, url in
            let summarizing = try await F.count(
                url,
                "SELECT count(*) FROM pg_class WHERE relname = 'events_by_seal_id' AND relam = (SELECT oid FROM pg_am WHERE amname = 'brin') AND 'autosummarize=on' = ANY(reloptions)"
            )
            #expect(summarizing == 1)
        }
    }

    @Test("the same event submitted twice, sequentially and by 8 racing connections, yields one award")
    func exactlyOnceUnderRaces() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            let id = UUID()
            let item = F.metro(id: id, at: F.base, evidence: "TXN-1")
            let receivedAt = F.base.addingTimeInterval(3600)
            let first = try await services.ledger.submit([item], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
            let again = try await services.ledger.submit([item], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
            #expect(first[0].status == .accepted)
            #expect(again[0].status == .duplicate)
            #expect(again[0].originalStatus == .accepted)
            #expect(again[0].award == first[0].award)

            // A fresh event raced by 8 submitters at once.
            let racedID = UUID()
            let raced = F.metro(id: racedID, at: F.base.addingTimeInterval(7200), evidence: "TXN-2")
            let outcomes = try await withThrowingTaskGroup(of: Verdict.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await services.ledger.submit(
                            [raced], citizen: citizen, device: "a", receivedAt: receivedAt.addingTimeInterval(7200), sentAt: nil)[0]
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0.status == .accepted }.count == 1)
            #expect(outcomes.filter { $0.status == .duplicate }.count == 7)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions WHERE event_id = \(racedID)") == 1)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions") == 2)
        }
    }

    @Test("the same evidence claimed by two citizens at once: one award and one evidence_claimed")
    func evidenceCreditedOnce() async throws {
        try await F.withLedger { services, url in
            let receivedAt = F.base.addingTimeInterval(3600)
            let citizens = (0..<6).map { _ in UUID() }
            let verdicts = try await withThrowingTaskGroup(of: Verdict.self) { group in
                for citizen in citizens {
                    group.addTask {
                        try await services.ledger.submit(
                            [F.metro(at: F.base, evidence: "TXN-SHARED")], citizen: citizen, device: "d", receivedAt: receivedAt, sentAt: nil)[0]
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(verdicts.filter { $0.status == .accepted }.count == 1)
            #expect(verdicts.filter { $0.code == "evidence_claimed" }.count == 5)
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_transactions") == 1)
            // The conflict is final: resubmitting it returns it as a duplicate of the conflict.
            #expect(try await F.count(url, "SELECT count(*) FROM events WHERE status = 'conflict' AND code = 'evidence_claimed'") == 5)
        }
    }

    @Test("id reuse with different content is a conflict and the original stands; overlapping trips conflict")
    func idReuseAndOverlap() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            let id = UUID()
            let receivedAt = F.base.addingTimeInterval(86_400)
            _ = try await services.ledger.submit([F.metro(id: id, at: F.base)], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
            let reused = try await services.ledger.submit(
                [F.metro(id: id, at: F.base, meters: 20_000)], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
            #expect(reused[0].status == .conflict)
            #expect(reused[0].code == "id_reused")
            // Another citizen using the same id cannot see or change the original either.
            let stolen = try await services.ledger.submit(
                [F.metro(id: id, at: F.base)], citizen: UUID(), device: "x", receivedAt: receivedAt, sentAt: nil)
            #expect(stolen[0].code == "id_reused")
            // A bike ride during the metro trip, from a second device of the same citizen.
            let overlap = try await services.ledger.submit(
                [F.bike(at: F.base.addingTimeInterval(600))], citizen: citizen, device: "b", receivedAt: receivedAt, sentAt: nil)
            #expect(overlap[0].status == .conflict)
            #expect(overlap[0].code == "overlap")
            let after = try await services.ledger.submit(
                [F.bike(at: F.base.addingTimeInterval(3600))], citizen: citizen, device: "b", receivedAt: receivedAt, sentAt: nil)
            #expect(after[0].status == .accepted)
            #expect(try await F.count(url, "SELECT count(*) FROM events") == 3)
        }
    }

    @Test("clock skew: a device clock hours ahead is corrected; beyond tolerance is rejected")
    func clockSkew() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            let receivedAt = F.base.addingTimeInterval(3600)
            // The device's clock runs 5 hours fast: it sends at receivedAt+5h, the trip at base+5h.
            let ahead = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(5 * 3600))], citizen: citizen, device: "a",
                receivedAt: receivedAt, sentAt: receivedAt.addingTimeInterval(5 * 3600))
            #expect(ahead[0].status == .accepted)
            #expect(try await F.count(url, "SELECT clock_offset_ms::int / 1000 FROM events") == -5 * 3600)
            // Without sent_at nothing is corrected: an event 2 hours in the future is rejected.
            let future = try await services.ledger.submit(
                [F.waste(at: receivedAt.addingTimeInterval(7200))], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
            #expect(future[0].code == "clock_skew")
        }
    }

    @Test("concurrent batches of one citizen never cross a cap")
    func capsHoldUnderConcurrency() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            // 00:30 in Shanghai: all 12 rides below fall on one local day.
            let day = try Date("2026-11-18T00:30:00+08:00", strategy: .iso8601)
            // 12 bike rides of 43 points each on one day, sent as 6 concurrent batches of 2: cap 100/day.
            let receivedAt = day.addingTimeInterval(86_400)
            let verdicts = try await withThrowingTaskGroup(of: [Verdict].self) { group in
                for batch in 0..<6 {
                    group.addTask {
                        try await services.ledger.submit(
                            [
                                F.bike(at: day.addingTimeInterval(Double(batch * 2) * 3600)),
                                F.bike(at: day.addingTimeInterval(Double(batch * 2 + 1) * 3600)),
                            ], citizen: citizen, device: "a", receivedAt: receivedAt, sentAt: nil)
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(verdicts.allSatisfy { $0.status == .accepted })
            let points = verdicts.compactMap(\.award?.points).reduce(0, +)
            #expect(points == 100)
            #expect(verdicts.filter { $0.award?.capped == true }.count >= 10)
            #expect(try await F.count(url, "SELECT points::int FROM cap_usage WHERE window_key LIKE 'bike_ride/day/%'") == 100)
            #expect(try await services.ledger.balance(citizen: citizen, province: "CN-GD").points == 100)
        }
    }

    @Test("a reversal mirrors its award exactly; a second reversal is refused")
    func reversal() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            let id = UUID()
            _ = try await services.ledger.submit(
                [F.metro(id: id, at: F.base)], citizen: citizen, device: "a", receivedAt: F.base.addingTimeInterval(3600), sentAt: nil)
            let record = try await services.ledger.reverse(event: id, province: "CN-GD", reason: "fraudulent card", actor: "admin:test")
            #expect(record.points == -57)
            #expect(record.gramsCO2e == -579)
            #expect(try await services.ledger.balance(citizen: citizen, province: "CN-GD") == (0, 0))
            #expect(
                try await F.count(
                    url, "SELECT count(*) FROM ledger_entries e JOIN ledger_transactions t USING (province, transaction_id) WHERE t.kind = 'reversal'"
                ) == 2)
            #expect(try await F.count(url, "SELECT sum(points)::int FROM ledger_entries") == 0)
            await #expect(throws: LedgerService.ReversalError.alreadyReversed(eventID: id)) {
                try await services.ledger.reverse(event: id, province: "CN-GD", reason: "again", actor: "admin:test")
            }
            await #expect(throws: LedgerService.ReversalError.noAward(eventID: UUID(uuidString: "00000000-0000-7000-8000-000000000000")!)) {
                try await services.ledger.reverse(
                    event: UUID(uuidString: "00000000-0000-7000-8000-000000000000")!, province: "CN-GD", reason: "x", actor: "admin")
            }
            // The CLI path.
            let cliID = UUID()
            _ = try await services.ledger.submit(
                [F.metro(id: cliID, at: F.base.addingTimeInterval(7200))], citizen: citizen, device: "a", receivedAt: F.base.addingTimeInterval(9000),
                sentAt: nil)
            let cli = try await CommandRunner.tanhui(
                ["ledger", "reverse", "--event", cliID.uuidString, "--province", "CN-GD", "--reason", "duplicate card tap"], databaseURL: url)
            #expect(cli.exitCode == 0, "\(cli.stderr)")
            #expect(cli.stdout.contains("-57 points"))
            let twice = try await CommandRunner.tanhui(
                ["ledger", "reverse", "--event", cliID.uuidString, "--province", "CN-GD", "--reason", "again"], databaseURL: url)
            #expect(twice.exitCode == 1)
            #expect(twice.stderr.contains("already reversed"))
            let statement = try await CommandRunner.tanhui(["ledger", "show", "--citizen", citizen.uuidString], databaseURL: url)
            #expect(statement.stdout.split(separator: "\n").count == 4)
            #expect(statement.stdout.contains("reversal"))
            #expect(statement.stdout.split(separator: "\n").last?.contains("balance 0") == true)
        }
    }

    @Test("the service role cannot UPDATE, DELETE or TRUNCATE ledger rows; triggers stop even the owner")
    func appendOnly() async throws {
        try await F.withLedger { services, url in
            _ = try await services.ledger.submit(
                [F.metro(at: F.base)], citizen: UUID(), device: "a", receivedAt: F.base.addingTimeInterval(3600), sentAt: nil)
            var components = URLComponents(string: url)!
            components.user = "tanhui_service"
            let service = TestDatabase.makePool(url: components.string!, size: 1)
            for statement: PostgresQuery in [
                "UPDATE ledger_entries SET points = points + 1", "DELETE FROM ledger_transactions", "TRUNCATE events",
                "UPDATE events SET status = 'rejected'", "DROP TABLE cap_usage",
            ] {
                do {
                    try await service.withConnection { try $0.query(statement) }
                    Issue.record("service role could run \(statement.sql)")
                } catch let error as PostgresError {
                    #expect(error.sqlState == "42501", "\(statement.sql): \(error)")
                }
            }
            // The service role can still do its job: read and append.
            let count = try await service.withConnection { try $0.query("SELECT count(*) FROM ledger_entries").scalar(Int.self) }
            #expect(count == 2)
            await service.shutdown()
            // The owner is stopped by the triggers.
            let owner = TestDatabase.makePool(url: url, size: 1)
            for statement: PostgresQuery in ["UPDATE ledger_entries SET points = 0", "DELETE FROM events", "TRUNCATE ledger_chain"] {
                do {
                    try await owner.withConnection { try $0.query(statement) }
                    Issue.record("owner could run \(statement.sql)")
                } catch let error as PostgresError {
                    #expect(error.message.contains("append-only"), "\(error)")
                }
            }
            await owner.shutdown()
        }
    }

    @Test("signed checkpoints verify, and a consistent rewrite of the whole chain is caught against an earlier one")
    func checkpoints() async throws {
        try await F.withLedger { services, url in
            let citizen = UUID()
            for hour in 0..<5 {
                _ = try await services.ledger.submit(
                    [F.waste(at: F.base.addingTimeInterval(Double(hour) * 3600))], citizen: citizen, device: "a",
                    receivedAt: F.base.addingTimeInterval(86_400), sentAt: nil)
            }
            let key = Curve25519.Signing.PrivateKey()
            let checkpoint = try await services.ledger.checkpoint(province: "CN-GD", privateKey: key)
            // Chain v2: 1 rule set and its publication record (migration 0009), 5 events, 5 transactions.
            #expect(checkpoint.sequence == 12)
            let verified = try Checkpoint.verify(note: checkpoint.note, trustedKey: key.publicKey)
            #expect(verified == checkpoint)
            #expect(try await services.ledger.chainExtends(verified))
            // A forged note, or one signed by another key, is refused.
            let forged = checkpoint.note.replacingOccurrences(of: "sequence 12", with: "sequence 11")
            #expect(throws: Checkpoint.Invalid.badSignature) { try Checkpoint.verify(note: forged, trustedKey: key.publicKey) }
            #expect(throws: Checkpoint.Invalid.untrustedKey) {
                try Checkpoint.verify(note: checkpoint.note, trustedKey: Curve25519.Signing.PrivateKey().publicKey)
            }

            // More awards: the chain grows and still extends the checkpoint.
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(6 * 3600))], citizen: citizen, device: "a", receivedAt: F.base.addingTimeInterval(86_400),
                sentAt: nil)
            try await services.ledger.seal()
            #expect(try await services.ledger.chainExtends(verified))

            // A rogue superuser rewrites an amount and recomputes the whole chain consistently.
            let owner = TestDatabase.makePool(url: url, size: 1)
            try await owner.withTransaction { connection in
                try TestDatabase.bypassTriggers(connection)  // disables the append-only triggers
                try connection.query(
                    "UPDATE ledger_entries SET points = points * 10 WHERE transaction_id = (SELECT min(transaction_id) FROM ledger_transactions)")
                try connection.query(
                    "UPDATE ledger_transactions SET points = points * 10 WHERE transaction_id = (SELECT min(transaction_id) FROM ledger_transactions)"
                )
                try connection.query("DELETE FROM ledger_chain")
            }
            try await services.ledger.seal()
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain") == 14)
            #expect(try await services.ledger.chainExtends(verified) == false)
            await owner.shutdown()

            // The CLI exports a checkpoint signed with TANHUI_CHECKPOINT_KEY.
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("cp-\(UUID().uuidString)").path
            let keyBase64 = key.rawRepresentation.base64EncodedString()
            let cli = try await CommandRunner.tanhui(
                ["ledger", "checkpoint", "--province", "CN-GD", "--out", out], databaseURL: url, environment: ["TANHUI_CHECKPOINT_KEY": keyBase64])
            #expect(cli.exitCode == 0, "\(cli.stderr)")
            let note = try String(contentsOfFile: out, encoding: .utf8)
            #expect(try Checkpoint.verify(note: note, trustedKey: key.publicKey).sequence == 14)
        }
    }

    @Test("the sealer never seals past a write still in flight, and never makes a writer wait: it seals nothing until the writer ends")
    func sealerWaitsForWritesInFlight() async throws {
        try await F.withLedger { services, url in
            _ = try await services.ledger.submit(
                [F.metro(at: F.base)], citizen: UUID(), device: "d", receivedAt: F.base.addingTimeInterval(3600), sentAt: nil)
            try await services.ledger.seal()
            // A writer in flight: it holds the publication lock shared and has drawn a seal id.
            let writer = try PostgresConnection.connect(PostgresConnectionSettings(url: url))
            defer { writer.close() }
            try writer.query("BEGIN")
            try writer.query("SELECT pg_advisory_xact_lock_shared(hashtext('tanhui.rules.CN-GD'))")
            let inFlight = try writer.query("SELECT nextval('ledger_transaction_ids')").scalar(Int64.self)
            // The sealer starts and waits for that writer; meanwhile a later write commits with a
            // higher id. A sealer queued for the lock exclusively would make this write queue
            // behind it until the first writer ended, which happens only after the write returns.
            async let sealing = services.ledger.seal(sealPatience: .seconds(2))
            try await Task.sleep(for: .milliseconds(300))
            let later = try await services.ledger.submit(
                [F.metro(at: F.base.addingTimeInterval(7200))], citizen: UUID(), device: "d", receivedAt: F.base.addingTimeInterval(9000),
                sentAt: nil)
            #expect(later.map(\.status) == [.accepted], "a writer never waits for the sealer")
            let laterID = try await F.count(url, "SELECT max(transaction_id)::int FROM ledger_transactions")
            #expect(laterID > inFlight)
            let sealedWhileOpen = try await sealing
            #expect(sealedWhileOpen["CN-GD"] == 0, "sealed past a write in flight: \(sealedWhileOpen)")
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE transaction_id = \(laterID)") == 0)
            try writer.query("ROLLBACK")
            let sealed = try await services.ledger.seal(sealPatience: .milliseconds(300))
            #expect((sealed["CN-GD"] ?? 0) >= 2, "the later transaction and its event: \(sealed)")
            #expect(try await F.count(url, "SELECT count(*) FROM ledger_chain WHERE transaction_id = \(laterID)") == 1)
            let (result, _) = try await AuditTests.audit(url)
            #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
        }
    }

    @Test("a seal round takes exactly its limit of the next records in seal-id order, across kinds, until none is left; the chain audits clean")
    func sealRoundLimit() async throws {
        try await F.withLedger { services, url in
            try await services.ledger.seal()
            // Events and awards of several citizens, interleaved in seal ids (rejected events too).
            for (index, citizen) in (0..<4).map({ _ in UUID() }).enumerated() {
                let start = F.base.addingTimeInterval(Double(index) * 86_400)
                _ = try await services.ledger.submit(
                    [F.metro(at: start), F.waste(at: start.addingTimeInterval(3600)), F.metro(at: start, meters: 10)], citizen: citizen, device: "a",
                    receivedAt: start.addingTimeInterval(7200), sentAt: nil)
            }
            let pending = try await F.count(
                url,
                "SELECT (SELECT count(*) FROM events WHERE seal_id > (SELECT max(coalesce(seal_id, transaction_id)) FROM ledger_chain)) + (SELECT count(*) FROM ledger_transactions WHERE transaction_id > (SELECT max(coalesce(seal_id, transaction_id)) FROM ledger_chain))"
            )
            #expect(pending == 4 * 3 + 4 * 2)
            var rounds: [Int] = []
            while let sealed = try await services.ledger.seal(maximumLinks: 3)["CN-GD"], sealed > 0, rounds.count < 100 { rounds.append(sealed) }
            #expect(rounds == Array(repeating: 3, count: pending / 3) + (pending % 3 == 0 ? [] : [pending % 3]), "\(rounds)")
            // Links follow seal ids, each record once.
            #expect(
                try await F.count(
                    url,
                    "SELECT count(*) FROM (SELECT coalesce(seal_id, transaction_id) - lag(coalesce(seal_id, transaction_id)) OVER (ORDER BY chain_seq) AS d FROM ledger_chain) x WHERE d <= 0"
                ) == 0)
            // Every award is linked after the event it credits (its id is drawn after the event's).
            #expect(
                try await F.count(
                    url,
                    """
                    SELECT count(*) FROM ledger_transactions t JOIN events e ON e.province = t.province AND e.event_id = t.event_id
                    JOIN ledger_chain ce ON ce.province = e.province AND ce.record = 'event' AND ce.event_id = e.event_id
                    JOIN ledger_chain ct ON ct.province = t.province AND ct.transaction_id = t.transaction_id
                    WHERE t.kind = 'award' AND ct.chain_seq > ce.chain_seq AND e.seal_id < t.transaction_id
                    """) == 8)
            let (result, _) = try await AuditTests.audit(url)
            #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
        }
    }
}
