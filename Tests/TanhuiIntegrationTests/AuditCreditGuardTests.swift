import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// The credit-once indexes are guard rails: `guard_rails` names one that no longer stands as
/// shipped, and `--since`, which probes new keys through them, scans instead.
@Suite("Audit: the credit-once indexes", .needsDatabase)
struct AuditCreditGuardTests {
    typealias F = LedgerFixtures
    typealias A = AuditTests

    @Test(
        "an evidence index that takes no new rows (indisready cleared) while a new event takes an old receipt: guard_rails names the index and completeness the receipt, by --since as by the full audit; the flag set again, the full audit still names the receipt"
    )
    func indexTakingNoNewRows() async throws {
        try await A.withCheckpointedClean { services, url, _, file, environment in
            let watermark = try A.watermark(ofCheckpoint: file)

            let fresh = UUID()
            _ = try await services.ledger.submit(
                [F.metro(id: fresh, at: F.base.addingTimeInterval(86_400), evidence: "TXN-AFTER")], citizen: UUID(), device: "g",
                receivedAt: F.base.addingTimeInterval(2 * 86_400), sentAt: nil)
            try await services.ledger.seal()
            _ = try await services.reports.advance(province: "CN-GD")
            for arguments in [["--since", file], []] {
                let (result, report) = try await A.audit(url, arguments, environment: environment)
                #expect(result.exitCode == 0, "\(arguments): \(result.stdout.prefix(3000))")
                let guards = A.check(report, "guard_rails")
                #expect(guards["status"] as? String == "ok" && (guards["checked"] as? Int ?? 0) >= LedgerAudit.creditGuards.count, "\(guards)")
            }

            // The index still answers reads but is no longer written to: the new event takes
            // an old event's receipt unseen by it, so a probe through it finds one credit.
            let old = try await A.scalar(
                url,
                "SELECT evidence_ref FROM events WHERE status = 'accepted' AND evidence_source IS NOT NULL AND seal_id <= \(watermark) ORDER BY seal_id LIMIT 1",
                as: String.self)
            try await A.rogue(url, ["UPDATE pg_index SET indisready = false WHERE indexrelid = 'events_evidence_credited_once'::regclass"])
            try await A.rogue(
                url,
                [
                    """
                    UPDATE events SET evidence_source = o.evidence_source, evidence_ref = o.evidence_ref
                    FROM (SELECT evidence_source, evidence_ref FROM events WHERE evidence_ref = \(old)) o WHERE events.event_id = \(fresh)
                    """
                ])
            let probed = try await A.scalar(
                url,
                """
                SELECT count(*) FROM events WHERE province = 'CN-GD' AND (status || '') = 'accepted' AND (evidence_ref || '') = \(old)
                """, as: Int64.self)
            #expect(probed == 2, "both events hold the receipt")
            for arguments in [["--since", file], []] {
                let outcome = try await A.audit(url, arguments, environment: environment)
                A.expectViolated(outcome, "guard_rails", "index", "events_evidence_credited_once")
                A.expectViolated(outcome, "completeness", "evidence_ref", old)
            }

            // The flag set again: the index stands in every catalog column but lacks the second
            // row. The full audit groups the table, not the index, and still names the receipt
            // (--since trusts a standing index's content; README, "tanhui audit").
            try await A.rogue(url, ["UPDATE pg_index SET indisready = true WHERE indexrelid = 'events_evidence_credited_once'::regclass"])
            let restored = try await A.audit(url, [], environment: environment)
            #expect(A.check(restored.1, "guard_rails")["status"] as? String == "ok", "\(A.check(restored.1, "guard_rails"))")
            A.expectViolated(restored, "completeness", "evidence_ref", old)
        }
    }

    @Test(
        "a second award taken in while the award index was not unique (indisunique cleared, then set again, so the index stands): --since names the event, a new one from the new awards grouped, an old one by its probe in the index; the full audit too"
    )
    func secondAwardWhileIndexNotUnique() async throws {
        try await A.withCheckpointedClean { services, url, clean, file, environment in
            let fresh = UUID()
            _ = try await services.ledger.submit(
                [F.bike(id: fresh, at: F.base.addingTimeInterval(86_400))], citizen: UUID(), device: "g",
                receivedAt: F.base.addingTimeInterval(2 * 86_400), sentAt: nil)
            try await services.ledger.seal()
            _ = try await services.reports.advance(province: "CN-GD")
            #expect(try await A.audit(url, ["--since", file], environment: environment).0.exitCode == 0)

            func awardTwice(_ event: UUID) async throws {
                try await A.rogue(
                    url,
                    [
                        "UPDATE pg_index SET indisunique = false WHERE indexrelid = 'ledger_one_award_per_event'::regclass",
                        A.secondAward(of: event),
                        "UPDATE pg_index SET indisunique = true WHERE indexrelid = 'ledger_one_award_per_event'::regclass",
                    ])
                #expect(
                    try await A.scalar(url, "SELECT count(*) FROM ledger_transactions WHERE event_id = \(event) AND kind = 'award'", as: Int64.self)
                        == 2)
            }
            // The event sealed after the checkpoint: only new awards can name it.
            try await awardTwice(fresh)
            for arguments in [["--since", file], []] {
                let outcome = try await A.audit(url, arguments, environment: environment)
                #expect(A.check(outcome.1, "guard_rails")["status"] as? String == "ok", "\(arguments): the index stands as shipped")
                A.expectViolated(outcome, "completeness", "event_id", fresh.uuidString.lowercased())
            }
            // An event sealed before it, awarded again after it: probed in the index.
            try await awardTwice(clean.metroEvent)
            for arguments in [["--since", file], []] {
                A.expectViolated(
                    try await A.audit(url, arguments, environment: environment), "completeness", "event_id", clean.metroEvent.uuidString.lowercased())
            }
        }
    }
}
