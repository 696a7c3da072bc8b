import Foundation
import Testing

@testable import TanhuiCore

/// Trust keys for partner feeds: `sources: partner_only` in the rule set, partner-owned
/// evidence, and the judge telling a device from a partner.
@Suite("Partner trust: partner_only activities and owned evidence")
struct PartnerTrustTests {
    typealias J = BatchJudgeTests
    static let partnerOnly = baseDocument.replacingOccurrences(
        of: "  - kind: transit_trip\n    method: per_distance\n",
        with: "  - kind: transit_trip\n    method: per_distance\n    sources: partner_only\n")

    @Test("sources parses (any, partner_only), rejects anything else with its path, and shows in the diff")
    func parsing() throws {
        #expect(Self.partnerOnly != baseDocument)
        let ruleSet = try parseOK(Self.partnerOnly)
        #expect(ruleSet.activity(kind: "transit_trip")?.sources == .partnerOnly)
        #expect(ruleSet.activity(kind: "bike_ride")?.sources == .any)
        let bad = issues(Self.partnerOnly.replacingOccurrences(of: "sources: partner_only", with: "sources: phones"))
        #expect(bad.map(\.code) == [.unknownSources])
        #expect(bad.first?.path == "activities[0].sources")
        let diff = RuleSetDiff.diff(try parseOK(baseDocument), ruleSet).joined(separator: "\n")
        #expect(diff.contains("sources"), "\(diff)")
    }

    @Test("a self-reported event of a partner_only kind is rejected self_report_not_accepted; the same event from a partner is credited")
    func partnerOnlyKinds() throws {
        let inputs = [J.input(J.trip(from: "2027-03-02T08:00:00+08:00", to: "2027-03-02T08:20:00+08:00")), J.input(J.waste())]
        let prepared = BatchJudge.prepare(
            inputs, receivedAtMs: J.ms(J.received), sentAtMs: nil, histories: ["CN-GD": RuleSetHistory([try parseOK(Self.partnerOnly)])])
        let device = BatchJudge.judge(prepared, citizen: J.citizen, facts: .init(), source: .device)
        #expect(J.codes(device) == [VerdictCode.selfReportNotAccepted, "accepted"])
        let partner = BatchJudge.judge(prepared, citizen: J.citizen, facts: .init(), source: .partner(UUID()))
        #expect(J.codes(partner) == ["accepted", "accepted"])
        // simulate's view (self-reported) says the same.
        let event = event(
            "transit_trip", "2027-03-01T08:00:00+08:00", ended: "2027-03-01T08:20:00+08:00", .init(mode: "metro", distanceMeters: 5_000))
        let received = at("2027-03-01T09:00:00+08:00")
        #expect(
            RuleEvaluator.evaluate(event: event, ruleSet: try parseOK(Self.partnerOnly), usage: CapUsage(), receivedAt: received).rejection?.code
                == .selfReportNotAccepted)
        #expect(
            RuleEvaluator.evaluate(event: event, ruleSet: try parseOK(Self.partnerOnly), usage: CapUsage(), receivedAt: received, selfReported: false)
                .award != nil)
        #expect(RuleEvaluator.evaluate(event: event, ruleSet: try parseOK(baseDocument), usage: CapUsage(), receivedAt: received).award != nil)
    }

    @Test("evidence of an owned source credits only through its owner: a device or another partner gets evidence_partner_owned")
    func ownedEvidence() throws {
        let owner = UUID()
        var facts = BatchJudge.Facts()
        facts.evidenceOwners["CN-GD"] = ["metro": owner]
        let inputs = [J.input(J.trip(from: "2027-03-02T08:00:00+08:00", to: "2027-03-02T08:20:00+08:00", evidence: "TXN-1"))]
        let prepared = BatchJudge.prepare(inputs, receivedAtMs: J.ms(J.received), sentAtMs: nil, histories: try J.history())
        #expect(J.codes(BatchJudge.judge(prepared, citizen: J.citizen, facts: facts, source: .device)) == [VerdictCode.evidencePartnerOwned])
        #expect(J.codes(BatchJudge.judge(prepared, citizen: J.citizen, facts: facts, source: .partner(UUID()))) == [VerdictCode.evidencePartnerOwned])
        let credited = BatchJudge.judge(prepared, citizen: J.citizen, facts: facts, source: .partner(owner))
        #expect(J.codes(credited) == ["accepted"])
        #expect(credited.awards.count == 1)
    }
}
