import Foundation
import TanhuiCore
import TanhuiPostgres
import TanhuiService
import Testing

/// The audit's `partner_feeds` check: clean after real partner uploads, and each rule caught
/// by a tamper a rogue superuser could make (triggers bypassed).
@Suite("Audit: partner_feeds tamper tests", .needsDatabase)
struct PartnerFeedAuditTests {
    typealias F = LedgerFixtures

    static func audit(_ url: String) async throws -> (exit: Int32, check: [String: Any]) {
        let result = try await CommandRunner.tanhui(["audit", "--json", "--province", "CN-GD"], databaseURL: url)
        let report = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any]
        #expect(report != nil, "\(result.stdout.prefix(300)) \(result.stderr.prefix(300))")
        let check = ((report?["checks"] as? [[String: Any]]) ?? []).first { $0["id"] as? String == "partner_feeds" } ?? [:]
        return (result.exitCode, check)
    }

    /// The rules named by the check's offenders.
    static func rules(_ check: [String: Any]) -> Set<String> {
        Set(["first", "worst", "last"].compactMap { (check[$0] as? [String: Any])?["rule"] as? String })
    }

    static func tamper(_ url: String, _ statements: [PostgresQuery]) async throws {
        let pool = TestDatabase.makePool(url: url, size: 1)
        try await pool.withTransaction { connection in
            try TestDatabase.bypassTriggers(connection)
            for statement in statements { try connection.query(statement) }
        }
        await pool.shutdown()
    }

    @Test("a link granted after occurred_at, a kind outside the partner's, owned evidence credited from a device: each violates partner_feeds")
    func tampering() async throws {
        try await F.withLedger { services, url in
            let (partner, _) = try await services.partners.create(province: "CN-GD", name: "GZ Metro", scopes: [.feed], createdBy: "test")
            _ = try await services.partnerFeeds.configure(
                province: "CN-GD", partner: partner.id, signingKey: nil, kinds: ["transit_trip"], evidenceSources: ["gz-metro"])
            let citizen = UUID()
            let code = try await services.partnerFeeds.requestLinkCode(citizen: citizen, device: "phone", partner: partner.id, scene: "app")
            _ = try await services.partnerFeeds.confirmLink(partner: partner, code: code.code, subject: "u-1")
            try await Task.sleep(for: .seconds(1.1))  // occurred_at travels in whole seconds
            let start = Date()
            let record: JSONValue = .object([
                "record_id": .string("r-1"), "subject": .string("u-1"), "kind": .string("transit_trip"),
                "occurred_at": .string(F.iso(start)), "ended_at": .string(F.iso(start.addingTimeInterval(180))),
                "data": .object(["mode": .string("metro"), "distance_m": .number("2000")]),
                "evidence": .object(["source": .string("gz-metro"), "ref": .string("TXN-1")]),
            ])
            let verdicts = try await services.partnerFeeds.ingest(partner: partner, records: [record], receivedAt: start.addingTimeInterval(1))
            #expect(verdicts.first?.verdict.status == .accepted, "\(verdicts)")
            // A device's award with evidence of a source nobody owns (yet).
            let pushed = try await services.ledger.push(
                [F.metro(at: Date().addingTimeInterval(-7200), evidence: "CARD-9")], citizen: UUID(), device: "phone", receivedAt: Date(), sentAt: nil
            )
            #expect(pushed.verdicts.first?.status == .accepted, "\(pushed.verdicts)")

            let clean = try await Self.audit(url)
            #expect(clean.exit == 0 && clean.check["status"] as? String == "ok", "\(clean.check)")

            try await Self.tamper(url, ["UPDATE partner_link_changes SET at = at + interval '1 day' WHERE change = 'granted'"])
            let link = try await Self.audit(url)
            #expect(link.exit == 1 && Self.rules(link.check) == ["link"], "\(link.check)")
            try await Self.tamper(url, ["UPDATE partner_link_changes SET at = at - interval '1 day' WHERE change = 'granted'"])
            #expect(try await Self.audit(url).exit == 0)

            try await Self.tamper(url, ["UPDATE partners SET kinds = '{bike_ride}'"])
            let kind = try await Self.audit(url)
            #expect(kind.exit == 1 && Self.rules(kind.check) == ["kind"], "\(kind.check)")
            try await Self.tamper(url, ["UPDATE partners SET kinds = '{transit_trip}'"])

            try await Self.tamper(
                url, ["INSERT INTO partner_evidence_sources (province, evidence_source, partner_id) VALUES ('CN-GD', 'sz_metro_card', \(partner.id))"]
            )
            let owned = try await Self.audit(url)
            #expect(owned.exit == 1 && Self.rules(owned.check) == ["owned_evidence"], "\(owned.check)")
        }
    }
}
