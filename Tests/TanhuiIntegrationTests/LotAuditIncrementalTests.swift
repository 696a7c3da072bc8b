import Foundation
import TanhuiPostgres
import TanhuiService
import Testing

/// The lot replay under `tanhui audit --since` (issue 13): it replays only the citizens a
/// checkpoint's successors touched (and those with a due lot left unexpired), streaming, and
/// agrees with the full audit on a ledger with lots, clean or tampered.
@Suite("Lot audit, incremental", .needsDatabase)
struct LotAuditIncrementalTests {
    typealias A = AuditTests
    typealias L = LotExpiryTests

    /// The lot ids a report's `lots` check names (first, worst and last offender).
    static func namedLots(_ report: [String: Any]) -> Set<String> {
        let check = A.check(report, "lots")
        return Set(["first", "worst", "last"].compactMap { (check[$0] as? [String: Any])?["lot"].map { "\($0)" } })
    }

    @Test(
        "a full audit agrees with --since each of two checkpoints on a ledger with lots: clean, a draw inflated after both, a lot's expiry undone before the last"
    )
    func fullAgreesWithIncremental() async throws {
        try await L.withLots { services, url in
            let (a, b, c) = (UUID(), UUID(), UUID())
            let (partner, _) = try await services.partners.create(province: "CN-GD", name: "Shop", scopes: [.redeem], createdBy: "test")
            func spend(_ citizen: UUID, _ points: Int64) async throws -> RedemptionService.Redemption {
                let token = try await services.redemptions.issueToken(citizen: citizen, province: "CN-GD", offer: nil)
                let held = try await services.redemptions.hold(
                    .init(id: UUID(), redeemToken: token.token, offerID: nil, points: points, partnerRef: nil), partner: partner)
                return try await services.redemptions.capture(id: held.id, partner: partner)
            }
            func submit(_ citizen: UUID, daysAgo: Int, id: UUID = UUID()) async throws {
                _ = try await services.ledger.submit(
                    [L.trip(daysAgo: daysAgo, id: id).0], citizen: citizen, device: "phone", receivedAt: Date(), sentAt: Date())
            }
            let environment = A.checkpointEnvironment()
            let first = A.checkpointFile()
            let second = A.checkpointFile()
            defer { for file in [first, second] { try? FileManager.default.removeItem(atPath: file) } }
            func checkpoint(_ file: String) async throws {
                try await services.ledger.seal()
                try await A.exportCheckpoint(url, to: file, environment: environment)
            }

            // Before the first checkpoint: A has a lot already due (it expires) and a live one; B a live one.
            try await submit(a, daysAgo: 40)
            try await submit(a, daysAgo: 3)
            try await submit(b, daysAgo: 2)
            #expect(try await services.redemptions.expireLots().expired == 1)
            try await checkpoint(first)
            // Between the checkpoints: A spends and is refunded; C earns a lot already due, which expires.
            let spent = try await spend(a, 30)
            _ = try await services.redemptions.refund(id: spent.id, refundID: UUID(), points: 5, partner: partner)
            let cEvent = UUID()
            try await submit(c, daysAgo: 40, id: cEvent)
            #expect(try await services.redemptions.expireLots().expired == 1)
            try await checkpoint(second)
            // After both: B spends.
            _ = try await spend(b, 10)
            try await services.ledger.seal()

            let (full, fullReport) = try await A.audit(url, [], environment: environment)
            #expect(full.exitCode == 0, "\(full.stdout.prefix(3000))")
            let fullLots = A.check(fullReport, "lots")["checked"] as? Int ?? 0
            #expect(fullLots == 4, "every lot replayed: \(A.check(fullReport, "lots"))")
            var checked: [Int] = []
            for file in [first, second] {
                let (result, report) = try await A.audit(url, ["--since", file], environment: environment)
                #expect(result.exitCode == 0, "\(result.stdout.prefix(3000))")
                #expect(A.check(report, "lots")["status"] as? String == "ok")
                checked.append(A.check(report, "lots")["checked"] as? Int ?? -1)
            }
            // Since the first: A, B and C's lots (all four); since the second: only B's.
            #expect(checked == [4, 1], "lots replayed per --since: \(checked)")

            // A draw of B's (after both checkpoints) inflated past its lot: all three audits name the lot.
            let bLot = try await L.query(url, "SELECT award_transaction_id FROM point_lots WHERE citizen_id = \(b)")[0].decode(0, as: Int64.self)
            try await A.rogue(url, ["UPDATE lot_movements SET points = points + 100 WHERE kind = 'draw' AND award_transaction_id = \(bLot)"])
            let tampered = try await A.audit(url, [], environment: environment)
            A.expectViolated(tampered, "lots", "lot", String(bLot))
            for file in [first, second] {
                let outcome = try await A.audit(url, ["--since", file], environment: environment)
                A.expectViolated(outcome, "lots", "lot", String(bLot))
                #expect(Self.namedLots(outcome.1) == Self.namedLots(tampered.1), "\(Self.namedLots(outcome.1)) vs \(Self.namedLots(tampered.1))")
            }
            try await A.rogue(url, ["UPDATE lot_movements SET points = points - 100 WHERE kind = 'draw' AND award_transaction_id = \(bLot)"])

            // C's expiry (before the second checkpoint) undone, as if the expirer never ran: C has
            // no transaction after the second checkpoint, yet --since it still names C's due lot.
            let cLot = try await L.lotID(url, event: cEvent)
            try await A.rogue(
                url,
                [
                    "DELETE FROM lot_movements WHERE kind = 'expiry' AND award_transaction_id = \(cLot)",
                    "UPDATE point_lots SET expired = false, remaining_points = points WHERE award_transaction_id = \(cLot)",
                ])
            let undone = try await A.audit(url, [], environment: environment)
            A.expectViolated(undone, "lots", "lot", String(cLot))
            for file in [first, second] {
                let outcome = try await A.audit(url, ["--since", file], environment: environment)
                A.expectViolated(outcome, "lots", "lot", String(cLot))
            }
        }
    }
}
