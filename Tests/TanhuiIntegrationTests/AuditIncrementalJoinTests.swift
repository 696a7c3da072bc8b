import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// `--since` joins new rows to new rows where both sides lie past the watermark (orphan
/// entries, unawarded events, skipped records), then looks what they leave out up in the whole
/// history: each rule still caught, and a new event credited by an old award not called unawarded.
@Suite("Audit --since: checks that join new rows to new rows", .needsDatabase)
struct AuditIncrementalJoinTests {
    typealias F = LedgerFixtures
    typealias A = AuditTests

    @Test(
        "after a checkpoint: a deleted award (its event unawarded, its entries orphaned) and a deleted link (a skipped event) are named by --since as by the full audit; an event moved past the watermark keeps its old award"
    )
    func newRowsJoinedToNewRows() async throws {
        try await A.withCheckpointedClean { services, url, clean, file, environment in
            let watermark = try A.watermark(ofCheckpoint: file)

            // After the checkpoint: three citizens' new awards, sealed.
            let receivedAt = F.base.addingTimeInterval(86_400)
            let unawarded = UUID()
            let unlinked = UUID()
            _ = try await services.ledger.submit(
                [F.waste(id: unawarded, at: F.base)], citizen: UUID(), device: "u", receivedAt: receivedAt, sentAt: nil)
            _ = try await services.ledger.submit(
                [F.waste(id: unlinked, at: F.base.addingTimeInterval(3600))], citizen: UUID(), device: "v", receivedAt: receivedAt, sentAt: nil)
            _ = try await services.ledger.submit(
                [F.waste(at: F.base.addingTimeInterval(7200))], citizen: clean.citizenB, device: "b", receivedAt: receivedAt, sentAt: nil)
            try await services.ledger.seal()
            let sinceClean = try await A.audit(url, ["--since", file], environment: environment)
            #expect(sinceClean.0.exitCode == 0, "\(sinceClean.0.stdout.prefix(3000))")
            #expect((A.check(sinceClean.1, "completeness")["checked"] as? Int ?? 0) >= 3)

            // An event of the old id layout (its award's id below its own seal id): an old
            // awarded event's seal id moved past the watermark, to an id nothing else holds. Its
            // award is old: completeness must not call the event unawarded (--since looks what
            // the new awards leave out up in the whole history), while the audit sees the edit.
            let freeID = try await A.scalar(url, "SELECT nextval('ledger_transaction_ids')", as: Int64.self)
            let oldSealID = try await A.scalar(url, "SELECT seal_id FROM events WHERE event_id = \(clean.metroEvent)", as: Int64.self)
            #expect(oldSealID <= watermark && freeID > watermark)
            try await A.rogue(url, ["UPDATE events SET seal_id = \(freeID) WHERE event_id = \(clean.metroEvent)"])
            for arguments in [["--since", file], []] {
                let (result, report) = try await A.audit(url, arguments, environment: environment)
                #expect(result.exitCode == 1, "\(arguments): the moved seal id is seen")
                #expect(A.check(report, "completeness")["status"] as? String == "ok", "\(arguments): \(A.check(report, "completeness"))")
            }
            try await A.rogue(url, ["UPDATE events SET seal_id = \(oldSealID) WHERE event_id = \(clean.metroEvent)"])
            #expect(try await A.audit(url, ["--since", file], environment: environment).0.exitCode == 0)

            // A new award deleted (its entries and link stay): its event is unawarded, and each
            // entry belongs to no transaction.
            let award = try await A.scalar(
                url, "SELECT transaction_id FROM ledger_transactions WHERE event_id = \(unawarded) AND kind = 'award'", as: Int64.self)
            #expect(award > watermark)
            try await A.rogue(
                url,
                [
                    "CREATE TABLE tamper_saved AS SELECT * FROM ledger_transactions WHERE transaction_id = \(award)",
                    "DELETE FROM ledger_transactions WHERE transaction_id = \(award)",
                ])
            for arguments in [["--since", file], []] {
                let outcome = try await A.audit(url, arguments, environment: environment)
                A.expectViolated(outcome, "completeness", "event_id", unawarded.uuidString.lowercased())
                A.expectViolated(outcome, "transactions_balance", "transaction_id", "\(award)")
            }
            try await A.rogue(url, ["INSERT INTO ledger_transactions SELECT * FROM tamper_saved", "DROP TABLE tamper_saved"])
            #expect(try await A.audit(url, ["--since", file], environment: environment).0.exitCode == 0)

            // A new event's link deleted from the middle of the chain: the event lies below the
            // head but is sealed by nothing (rule "skipped"), by --since as by the full audit.
            try await A.rogue(url, ["DELETE FROM ledger_chain WHERE record = 'event' AND event_id = \(unlinked)"])
            for arguments in [["--since", file], []] {
                let (result, report) = try await A.audit(url, arguments, environment: environment)
                #expect(result.exitCode == 1)
                let skipped = Self.skippedEvents(report)
                #expect(skipped.contains(unlinked.uuidString.lowercased()), "\(arguments): \(A.check(report, "hash_chain"))")
            }
        }
    }

    /// The events the report's hash_chain check names under rule "skipped" (its first, worst
    /// and last offenders).
    static func skippedEvents(_ report: [String: Any]) -> [String] {
        ["first", "worst", "last"].compactMap { A.check(report, "hash_chain")[$0] as? [String: Any] }
            .filter { $0["rule"] as? String == "skipped" }.compactMap { $0["event_id"] as? String }
    }
}
