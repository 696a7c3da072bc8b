import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// The redemption ledger through the service: audit checks with a tamper test each, and a
/// property test against an in-memory model of balances.
@Suite("Redemption ledger: audit tamper tests, model property test", .needsDatabase)
struct RedemptionLedgerTests {
    typealias F = LedgerFixtures

    /// A citizen with `trips` metro awards and a redeem partner.
    static func scene(_ services: TanhuiServices, citizens: Int = 1, trips: Int = 2) async throws -> ([UUID], PartnerIdentity, [Int64]) {
        var points: [Int64] = []
        var ids: [UUID] = []
        let now = Date()
        for _ in 0..<citizens {
            let citizen = UUID()
            try await services.ledger.submit(
                (0..<trips).map { F.metro(at: now.addingTimeInterval(Double(-3600 * ($0 + 1)))) }, citizen: citizen, device: "phone", receivedAt: now,
                sentAt: now)
            ids.append(citizen)
            points.append(try await services.ledger.balance(citizen: citizen, province: "CN-GD").points)
        }
        let (partner, _) = try await services.partners.create(province: "CN-GD", name: "Shop", scopes: [.redeem], createdBy: "test")
        return (ids, partner, points)
    }

    static func hold(
        _ services: TanhuiServices, _ citizen: UUID, _ partner: PartnerIdentity, points: Int64? = nil, offer: UUID? = nil
    )
        async throws -> RedemptionService.Redemption
    {
        let token = try await services.redemptions.issueToken(citizen: citizen, province: "CN-GD", offer: offer)
        return try await services.redemptions.hold(
            .init(id: UUID(), redeemToken: token.token, offerID: offer, points: points, partnerRef: nil), partner: partner)
    }

    static func tamper(_ url: String, _ statements: [PostgresQuery]) async throws {
        let pool = TestDatabase.makePool(url: url, size: 1)
        try await pool.withTransaction { connection in
            try TestDatabase.bypassTriggers(connection)
            for statement in statements { try connection.query(statement) }
        }
        await pool.shutdown()
    }

    @Test("a clean redemption ledger audits clean; each tamper turns its check red")
    func auditTampers() async throws {
        try await F.withLedger { services, url in
            let (citizens, partner, _) = try await Self.scene(services)
            let citizen = citizens[0]
            let captured = try await Self.hold(services, citizen, partner, points: 10)
            _ = try await services.redemptions.capture(id: captured.id, partner: partner)
            _ = try await services.redemptions.refund(id: captured.id, refundID: UUID(), points: 4, partner: partner)
            let voided = try await Self.hold(services, citizen, partner, points: 3)
            _ = try await services.redemptions.void(id: voided.id, partner: partner)
            let open = try await Self.hold(services, citizen, partner, points: 2)
            let offer = try await services.offers.create(
                province: "CN-GD", partner: nil, name: "Ride", pointsCost: 1, totalLimit: 2, perCitizenLimit: .init(count: 2, period: "day"),
                validFrom: Date().addingTimeInterval(-60), validTo: Date().addingTimeInterval(3600), createdBy: "test")
            _ = try await Self.hold(services, citizen, partner, offer: offer.id)
            _ = try await Self.hold(services, citizen, partner, offer: offer.id)
            await #expect(throws: RedemptionError.offerSoldOut(offer.id)) { _ = try await Self.hold(services, citizen, partner, offer: offer.id) }
            try await services.ledger.seal()
            let (clean, report) = try await AuditTests.audit(url)
            #expect(clean.exitCode == 0, "\(clean.stdout.prefix(3000))")
            #expect(AuditTests.check(report, "redemptions")["status"] as? String == "ok")
            #expect((AuditTests.check(report, "redemptions")["checked"] as? Int ?? 0) == 5)

            // The cached held_points drift from the open holds.
            try await Self.tamper(url, ["UPDATE citizen_accounts SET held_points = held_points + 5 WHERE citizen_id = \(citizen)"])
            AuditTests.expectViolated(try await AuditTests.audit(url), "redemptions", "citizen_id", citizen.uuidString.lowercased())
            try await Self.tamper(url, ["UPDATE citizen_accounts SET held_points = held_points - 5 WHERE citizen_id = \(citizen)"])

            // A refund larger than the capture.
            try await Self.tamper(url, ["UPDATE redemption_refunds SET points = 11 WHERE redemption_id = \(captured.id)"])
            AuditTests.expectViolated(try await AuditTests.audit(url), "redemptions", "redemption_id", captured.id.uuidString.lowercased())
            try await Self.tamper(url, ["UPDATE redemption_refunds SET points = 4 WHERE redemption_id = \(captured.id)"])

            // A hold left unresolved long past its TTL.
            try await Self.tamper(
                url,
                [
                    "UPDATE redemptions SET created_at = now() - interval '70 minutes', expires_at = now() - interval '1 hour' WHERE redemption_id = \(open.id)"
                ])
            AuditTests.expectViolated(try await AuditTests.audit(url), "redemptions", "redemption_id", open.id.uuidString.lowercased())
            try await Self.tamper(
                url, ["UPDATE redemptions SET created_at = \(open.createdAt), expires_at = \(open.expiresAt) WHERE redemption_id = \(open.id)"])

            // The voided hold's outcome rewritten as a capture (capture and void no longer match the ledger).
            try await Self.tamper(url, ["UPDATE redemption_outcomes SET outcome = 'captured' WHERE redemption_id = \(voided.id)"])
            AuditTests.expectViolated(try await AuditTests.audit(url), "redemptions", "redemption_id", voided.id.uuidString.lowercased())
            try await Self.tamper(url, ["UPDATE redemption_outcomes SET outcome = 'voided' WHERE redemption_id = \(voided.id)"])

            // The offer's limit lowered below its live units.
            try await Self.tamper(url, ["UPDATE offers SET total_limit = 1 WHERE offer_id = \(offer.id)"])
            AuditTests.expectViolated(try await AuditTests.audit(url), "offer_limits", "offer_id", offer.id.uuidString.lowercased())
            try await Self.tamper(url, ["UPDATE offers SET total_limit = 2, per_citizen_count = 1 WHERE offer_id = \(offer.id)"])
            AuditTests.expectViolated(try await AuditTests.audit(url), "offer_limits", "citizen_id", citizen.uuidString.lowercased())
            try await Self.tamper(url, ["UPDATE offers SET per_citizen_count = 2 WHERE offer_id = \(offer.id)"])

            // A redemption row rewritten after sealing breaks its chain link.
            try await Self.tamper(url, ["UPDATE redemptions SET partner_ref = 'forged' WHERE redemption_id = \(captured.id)"])
            let (_, forged) = try await AuditTests.audit(url)
            #expect(AuditTests.check(forged, "hash_chain")["status"] as? String == "violated")
        }
    }

    /// The model: per citizen available and held, per redemption its state and refunds.
    struct Model {
        var available: [UUID: Int64] = [:]
        var held: [UUID: Int64] = [:]
        var redemptions: [UUID: (citizen: UUID, points: Int64, state: RedemptionService.State, refunded: Int64)] = [:]
    }

    @Test("random holds, captures, voids, refunds and expiries agree with an in-memory model; the audit stays clean")
    func propertyAgainstModel() async throws {
        try await F.withLedger { services, url in
            let (citizens, partner, points) = try await Self.scene(services, citizens: 3, trips: 1)
            var model = Model()
            for (citizen, balance) in zip(citizens, points) { model.available[citizen] = balance }
            var generator = SplitMix64(seed: 20_261_202)
            for _ in 0..<120 {
                let citizen = citizens[Int.random(in: 0..<citizens.count, using: &generator)]
                let open = model.redemptions.filter { $0.value.state == .held }.map(\.key).sorted { $0.uuidString < $1.uuidString }
                let captured = model.redemptions.filter { $0.value.state == .captured }.map(\.key).sorted { $0.uuidString < $1.uuidString }
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<4:
                    let asked = Int64.random(in: 1...40, using: &generator)
                    let token = try await services.redemptions.issueToken(citizen: citizen, province: "CN-GD", offer: nil)
                    let id = UUID()
                    do {
                        _ = try await services.redemptions.hold(
                            .init(id: id, redeemToken: token.token, offerID: nil, points: asked, partnerRef: nil), partner: partner)
                        #expect(model.available[citizen]! >= asked)
                        model.available[citizen]! -= asked
                        model.held[citizen, default: 0] += asked
                        model.redemptions[id] = (citizen, asked, .held, 0)
                    } catch RedemptionError.insufficientPoints {
                        #expect(model.available[citizen]! < asked)
                    }
                case 4..<6 where !open.isEmpty:
                    let id = open[Int.random(in: 0..<open.count, using: &generator)]
                    let entry = model.redemptions[id]!
                    _ = try await services.redemptions.capture(id: id, partner: partner)
                    model.held[entry.citizen]! -= entry.points
                    model.redemptions[id]!.state = .captured
                case 6 where !open.isEmpty:
                    let id = open[Int.random(in: 0..<open.count, using: &generator)]
                    let entry = model.redemptions[id]!
                    _ = try await services.redemptions.void(id: id, partner: partner)
                    model.held[entry.citizen]! -= entry.points
                    model.available[entry.citizen]! += entry.points
                    model.redemptions[id]!.state = .voided
                case 7 where !open.isEmpty:
                    // Expiry: everything open voids at an instant past every TTL.
                    let voided = try await services.redemptions.expireHolds(asOf: Date().addingTimeInterval(3600))
                    #expect(voided == open.count)
                    for id in open {
                        let entry = model.redemptions[id]!
                        model.held[entry.citizen]! -= entry.points
                        model.available[entry.citizen]! += entry.points
                        model.redemptions[id]!.state = .expired
                    }
                case 8..<10 where !captured.isEmpty:
                    let id = captured[Int.random(in: 0..<captured.count, using: &generator)]
                    let entry = model.redemptions[id]!
                    let asked = Int64.random(in: 1...max(1, entry.points), using: &generator)
                    do {
                        _ = try await services.redemptions.refund(id: id, refundID: UUID(), points: asked, partner: partner)
                        #expect(entry.refunded + asked <= entry.points)
                        model.redemptions[id]!.refunded += asked
                        model.available[entry.citizen]! += asked
                    } catch RedemptionError.refundTooLarge {
                        #expect(entry.refunded + asked > entry.points)
                    }
                default:
                    continue
                }
            }
            let pool = TestDatabase.makePool(url: url, size: 1)
            for citizen in citizens {
                let row = try await pool.withConnection {
                    try $0.query("SELECT balance_points, held_points FROM citizen_accounts WHERE citizen_id = \(citizen)").rows[0]
                }
                #expect(try row.decode(0, as: Int64.self) == model.available[citizen])
                #expect(try row.decode(1, as: Int64.self) == model.held[citizen, default: 0])
            }
            for (id, entry) in model.redemptions {
                let stored = try await services.redemptions.redemption(id: id, partner: partner)
                #expect(stored.state == entry.state && stored.refundedPoints == entry.refunded)
            }
            await pool.shutdown()
            try await services.ledger.seal()
            let (result, report) = try await AuditTests.audit(url)
            #expect(result.exitCode == 0 && report["ok"] as? Bool == true, "\(result.stdout.prefix(3000))")
        }
    }
}
