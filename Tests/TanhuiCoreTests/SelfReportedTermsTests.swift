import Foundation
import Testing

@testable import TanhuiCore

/// `self_reported: {factor_multiplier: M}`: a citizen's own report of an activity earns its
/// factors × M (exact), a feed partner's record earns them as written (Hubei: bus 105 points
/// with evidence, 52 by self check-in).
@Suite("Self-reported terms: separate factors for self-reported events")
struct SelfReportedTermsTests {
    /// The base document with `self_reported: {factor_multiplier: 0.5}` on every activity.
    static let halved: String = {
        var text = baseDocument
        for method in ["per_distance", "per_trip", "per_event", "per_weight", "per_count", "baseline_delta"] {
            text = text.replacingOccurrences(
                of: "    method: \(method)\n", with: "    method: \(method)\n    self_reported: { factor_multiplier: 0.5 }\n")
        }
        return text
    }()

    static func judge(_ e: ActionEvent, _ ruleSet: RuleSet, selfReported: Bool, usage: CapUsage = CapUsage()) -> Award? {
        RuleEvaluator.evaluate(
            event: e, ruleSet: ruleSet, usage: usage, receivedAt: (e.endedAt ?? e.occurredAt).addingTimeInterval(3600),
            selfReported: selfReported
        ).award
    }

    @Test("exact products: 46.7 × 0.5 = 23.35; a product needing more than 9 fraction digits or 18 digits is nil")
    func exactProduct() throws {
        #expect(try ExactDecimal(parsing: "46.7").exactProduct(ExactDecimal(parsing: "0.5")) == ExactDecimal(parsing: "23.35"))
        #expect(try ExactDecimal(parsing: "0.02").exactProduct(ExactDecimal(parsing: "0.5")) == ExactDecimal(parsing: "0.01"))
        #expect(try ExactDecimal(parsing: "2.5").exactProduct(ExactDecimal(parsing: "0.4")) == ExactDecimal(1))
        #expect(try ExactDecimal(parsing: "0.000000001").exactProduct(ExactDecimal(parsing: "0.5")) == nil)
        #expect(try ExactDecimal(parsing: "999999999999999999").exactProduct(ExactDecimal(parsing: "0.9")) == nil)
    }

    @Test("every method: a self-reported event earns factor × 0.5 (one floor of the grams), a partner's record the full factor")
    func everyMethod() throws {
        let ruleSet = try parseOK(Self.halved)
        #expect(ruleSet.activities.allSatisfy { $0.selfReported?.factorMultiplier == ExactDecimal(mantissa: 5, scale: 1) })
        let t0 = "2027-03-01T08:00:00+08:00"
        // (event, evidenced grams, self-reported grams)
        let cases: [(ActionEvent, Int64, Int64)] = [
            // 12.4 km × 46.7 = 579.08 → 579; × 23.35 = 289.54 → 289
            (event("transit_trip", ended: "2027-03-01T08:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400)), 579, 289),
            // 52.5 per trip → 52; 26.25 → 26
            (event("bus_ride", t0, .init(mode: "bus", distanceMeters: 1_000)), 52, 26),
            (event("waste_sorting"), 40, 20),
            // 2 kg × 900 = 1 800; × 450 = 900
            (event("recycling", t0, .init(material: "paper", weightGrams: 2_000)), 1_800, 900),
            // 5 001 steps × 0.02 = 100.02 → 100; × 0.01 = 50.01 → 50
            (event("walking", t0, .init(count: 5_001)), 100, 50),
            // (8 000 − 6 000) Wh × 386.9 g/kWh = 773.8 → 773; × 193.45 = 386.9 → 386
            (event("power_saving", t0, .init(consumptionWh: 6_000, days: 1)), 773, 386),
        ]
        for (e, evidenced, selfReported) in cases {
            let partner = try #require(Self.judge(e, ruleSet, selfReported: false), "\(e.kind)")
            let device = try #require(Self.judge(e, ruleSet, selfReported: true), "\(e.kind)")
            #expect(partner.gramsCO2e == evidenced, "\(e.kind)")
            #expect(device.gramsCO2e == selfReported, "\(e.kind)")
            #expect(device.pointsAwarded == selfReported / 10 && partner.pointsAwarded == evidenced / 10, "\(e.kind)")
            #expect(!partner.selfReported && device.selfReported)
        }
        // The award explains itself with the factor actually used.
        let metro = event("transit_trip", ended: "2027-03-01T08:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))
        #expect(Self.judge(metro, ruleSet, selfReported: true)?.factor.value == ExactDecimal(mantissa: 2335, scale: 2))
        #expect(Self.judge(metro, ruleSet, selfReported: false)?.factor.value == ExactDecimal(mantissa: 467, scale: 1))
        // Without the key both sources earn alike.
        let plain = try parseOK(baseDocument)
        #expect(Self.judge(metro, plain, selfReported: true)?.gramsCO2e == 579)
        #expect(Self.judge(metro, plain, selfReported: false)?.gramsCO2e == 579)
    }

    @Test("campaigns multiply the self-reported points and caps limit them as any others")
    func campaignsAndCaps() throws {
        let ruleSet = try parseOK(Self.halved)
        // Car-free day ×2: 289 g × 2 / 10 = 57 points (the grams stay 289).
        let carFree = event(
            "transit_trip", "2027-09-22T08:00:00+08:00", ended: "2027-09-22T08:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))
        let award = try #require(Self.judge(carFree, ruleSet, selfReported: true))
        #expect(award.gramsCO2e == 289 && award.pointsAwarded == 57 && award.campaign == "Car-free day")
        // bike_ride is capped at 100 points a day: 95 used, a self-reported 10 km ride (215 g → 21 points) gets 5.
        let ride = event("bike_ride", "2027-03-01T08:00:00+08:00", ended: "2027-03-01T08:40:00+08:00", .init(distanceMeters: 10_000))
        var usage = CapUsage()
        let window = try #require(ruleSet.capWindows(for: ride).first { $0.id.kind == "bike_ride" })
        usage[window] = CapUsage.Counter(points: 95, events: 3)
        let capped = try #require(Self.judge(ride, ruleSet, selfReported: true, usage: usage))
        #expect(capped.gramsCO2e == 215 && capped.pointsBeforeCaps == 21 && capped.pointsAwarded == 5 && capped.capped)
    }

    @Test("the judge values one kind differently from a device and from a partner")
    func judgeBySource() throws {
        typealias J = BatchJudgeTests
        let inputs = [J.input(J.trip(from: "2027-03-02T08:00:00+08:00", to: "2027-03-02T08:20:00+08:00"))]
        let prepared = BatchJudge.prepare(
            inputs, receivedAtMs: J.ms(J.received), sentAtMs: nil, histories: ["CN-GD": RuleSetHistory([try parseOK(Self.halved)])])
        // 5 km on the metro: 233.5 → 233 g (46.7) vs 116.75 → 116 g (23.35).
        let device = BatchJudge.judge(prepared, citizen: J.citizen, facts: .init(), source: .device)
        let partner = BatchJudge.judge(prepared, citizen: J.citizen, facts: .init(), source: .partner(UUID()))
        #expect(device.verdicts.first?.award?.gramsCO2e == 116 && device.verdicts.first?.award?.points == 11)
        #expect(partner.verdicts.first?.award?.gramsCO2e == 233 && partner.verdicts.first?.award?.points == 23)
        #expect(device.accounts["CN-GD"]?.points == 11 && partner.accounts["CN-GD"]?.points == 23)
    }

    @Test("validation: each bad value is reported at its path, line and column")
    func validation() throws {
        let key = "self_reported: { factor_multiplier: 0.5 }"
        func one(_ replacement: String) throws -> ValidationIssue {
            let text = Self.halved.replacingOccurrences(of: key, with: replacement)
            let found = issues(text)
            // Every activity carries the edited terms; the first is transit_trip's (activities[0]).
            let first = try #require(found.first, "no issue for \(replacement)")
            #expect(first.path.hasPrefix("activities[0].self_reported"), "\(first)")
            // The line of transit_trip's self_reported key in the edited text.
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("self_reported") }.map { $0 + 1 }
            #expect(first.line == line, "\(first)")
            return first
        }
        let zero = try one("self_reported: { factor_multiplier: 0 }")
        #expect(zero.code == .notPositive && zero.path == "activities[0].self_reported.factor_multiplier")
        #expect(zero.column == "    self_reported: { factor_multiplier: ".count + 1)
        let above = try one("self_reported: { factor_multiplier: 1.5 }")
        #expect(above.code == .outOfRange && above.message.contains("1.5"))
        #expect(try one("self_reported: { factor_multiplier: -0.5 }").code == .notPositive)
        #expect(try one("self_reported: { factor_multiplier: half }").code == .badDecimal)
        #expect(try one("self_reported: { factor_multiplier: 0.5, cap: 3 }").code == .unknownKey)
        #expect(try one("self_reported: { }").code == .missing)
        #expect(try one("self_reported: 0.5").code == .wrongType)
        // 46.7 × 0.123456789 needs 10 fraction digits: refused rather than rounded.
        let inexact = try one("self_reported: { factor_multiplier: 0.123456789 }")
        #expect(inexact.code == .badDecimal && inexact.path == "activities[0].self_reported.factor_multiplier", "\(inexact)")
        #expect(inexact.message.contains("46.7") || inexact.message.contains("26.9"), "\(inexact.message)")
        // A multiplier of 1 is allowed (the same as none); 0.123456789 is fine against an integer factor.
        #expect(issues(Self.halved.replacingOccurrences(of: key, with: "self_reported: { factor_multiplier: 1 }")).isEmpty)
        // Contradicts partner_only: self-reported events of that kind are rejected anyway.
        let both = Self.halved.replacingOccurrences(
            of: "method: per_distance\n    self_reported", with: "method: per_distance\n    sources: partner_only\n    self_reported")
        let conflict = issues(both)
        #expect(conflict.map(\.code) == [.conflictingKeys, .conflictingKeys], "\(conflict)")  // transit_trip and bike_ride
        #expect(conflict.first?.path == "activities[0].self_reported")
    }

    @Test("the diff names the key: added, changed, removed")
    func diff() throws {
        let plain = try parseOK(baseDocument)
        let halved = try parseOK(Self.halved)
        let quarter = try parseOK(Self.halved.replacingOccurrences(of: "factor_multiplier: 0.5", with: "factor_multiplier: 0.25"))
        let added = RuleSetDiff.diff(plain, halved)
        #expect(added.contains("transit_trip.self_reported.factor_multiplier: added 0.5"), "\(added)")
        #expect(added.count == 8)
        #expect(RuleSetDiff.diff(halved, quarter).contains("walking.self_reported.factor_multiplier: 0.5 → 0.25"))
        #expect(RuleSetDiff.diff(halved, plain).contains("waste_sorting.self_reported.factor_multiplier: removed (was 0.5)"))
        #expect(plain != halved && halved != quarter)
    }

    @Test("the Hubei sample: a bus trip earns 105 points from the operator's record, 52 from a self check-in")
    func hubeiSample() throws {
        let ruleSet = try parseOK(try SampleRuleSetTests.load("CN-HB"))
        let start = at("2026-03-02T08:00:00+08:00")
        func trip(_ mode: String) -> ActionEvent {
            ActionEvent(kind: "transit_trip", province: "CN-HB", occurredAt: start, data: .init(mode: mode))
        }
        #expect(Self.judge(trip("bus"), ruleSet, selfReported: false)?.pointsAwarded == 105)
        #expect(Self.judge(trip("bus"), ruleSet, selfReported: true)?.pointsAwarded == 52)
        #expect(Self.judge(trip("metro"), ruleSet, selfReported: false)?.pointsAwarded == 274)
        #expect(Self.judge(trip("metro"), ruleSet, selfReported: true)?.pointsAwarded == 137)
        let walk = ActionEvent(kind: "walking", province: "CN-HB", occurredAt: start, data: .init(count: 6_000))
        #expect(Self.judge(walk, ruleSet, selfReported: true)?.pointsAwarded == 120)
    }
}
