import Foundation
import Testing

@testable import TanhuiCore

private let ruleSet = try! RuleSetParser.parse(baseDocument)

private func judge(_ e: ActionEvent, usage: CapUsage = CapUsage(), receivedAt: Date? = nil) -> Evaluation {
    RuleEvaluator.evaluate(event: e, ruleSet: ruleSet, usage: usage, receivedAt: receivedAt ?? (e.endedAt ?? e.occurredAt).addingTimeInterval(3600))
}

private func award(_ e: ActionEvent, sourceLocation: SourceLocation = #_sourceLocation) -> Award? {
    let result = judge(e)
    guard let a = result.award else {
        Issue.record("expected an award, got \(result)", sourceLocation: sourceLocation)
        return nil
    }
    return a
}

private func code(_ e: ActionEvent, receivedAt: Date? = nil) -> RejectionCode? {
    judge(e, receivedAt: receivedAt).rejection?.code
}

private let t0 = "2027-03-01T08:00:00+08:00"

@Suite struct RuleEvaluatorTests {
    @Test func workedExampleMetro() throws {
        // 12.4 km on the metro at 46.7 g/km = 579.08 g → 579 g → 57 points at 10 g/point.
        let a = try #require(award(event("transit_trip", t0, ended: "2027-03-01T08:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))))
        #expect(a.gramsCO2e == 579)
        #expect(a.basePoints == 57)
        #expect(a.pointsBeforeCaps == 57)
        #expect(a.pointsAwarded == 57)
        #expect(!a.capped && a.capsApplied.isEmpty)
        #expect(a.multiplier == ExactDecimal(1) && a.campaign == nil)
        #expect(a.ruleSetProvince == "CN-GD" && a.ruleSetVersion == 3 && a.methodology == "test methodology")
        #expect(a.factor == AppliedFactor(value: try ExactDecimal(parsing: "46.7"), unit: "g/km", variant: "metro", series: nil))
        #expect(a.consumption.map(\.window.key) == ["*/day/2027-03-01"])
        #expect(a.consumption.map(\.points) == [57] && a.consumption.map(\.events) == [1])
    }

    @Test func everyMethod() throws {
        // per_distance, by mode and flat
        #expect(award(event("transit_trip", t0, ended: "2027-03-01T09:00:00+08:00", .init(mode: "bus", distanceMeters: 10_000)))?.gramsCO2e == 269)
        let bike = award(event("bike_ride", t0, ended: "2027-03-01T08:20:00+08:00", .init(distanceMeters: 5_000)))
        #expect(bike?.gramsCO2e == 215 && bike?.pointsAwarded == 21)
        // per_trip: 52.5 g per ride floors to 52 g → 5 points
        let ride = award(event("bus_ride", t0, .init(mode: "bus", distanceMeters: 3_000)))
        #expect(ride?.gramsCO2e == 52 && ride?.pointsAwarded == 5 && ride?.factor.unit == "g/trip")
        // per_event
        #expect(award(event("waste_sorting"))?.pointsAwarded == 4)
        // per_weight: 2.5 kg paper × 900 g/kg = 2250 g; 333 g aluminium × 15000 g/kg = 4995 g
        #expect(award(event("recycling", t0, .init(material: "paper", weightGrams: 2_500)))?.gramsCO2e == 2250)
        let alu = award(event("recycling", t0, .init(material: "aluminium", weightGrams: 333)))
        #expect(alu?.gramsCO2e == 4995 && alu?.pointsAwarded == 499 && alu?.factor.variant == "aluminium")
        // per_count: 12 345 steps × 0.02 g = 246.9 g → 246 g → 24 points
        let walk = award(event("walking", t0, .init(count: 12_345)))
        #expect(walk?.gramsCO2e == 246 && walk?.pointsAwarded == 24 && walk?.factor.unit == "g/steps")
        // baseline_delta, fixed: 8000 Wh × 7 days − 50 000 Wh = 6000 Wh × 386.9 g/kWh = 2321.4 g → 2321 g → 232 points
        let power = award(event("power_saving", t0, .init(consumptionWh: 50_000, days: 7)))
        #expect(power?.gramsCO2e == 2321 && power?.pointsBeforeCaps == 232 && power?.factor.series == "MEE 2022 South grid")
        // consuming more than the baseline saves nothing, and that is not an error
        let none = award(event("power_saving", t0, .init(consumptionWh: 60_000, days: 7)))
        #expect(none?.gramsCO2e == 0 && none?.pointsAwarded == 0 && none?.consumption.isEmpty == true)
        // baseline_delta, own history: (9000 − 7000) Wh × 386.9 = 773.8 → 773 g → 77 points
        #expect(award(event("power_own", t0, .init(consumptionWh: 7_000, baselineWh: 9_000, days: 1)))?.pointsAwarded == 77)
    }

    @Test func everyRejectionCode() {
        let metro = EventData(mode: "metro", distanceMeters: 12_400)
        let ended = "2027-03-01T08:30:00+08:00"
        var seen: Set<RejectionCode> = []
        func check(_ expected: RejectionCode, _ e: ActionEvent, receivedAt: Date? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(code(e, receivedAt: receivedAt) == expected, sourceLocation: sourceLocation)
            seen.insert(expected)
        }
        check(.noRuleset, event("transit_trip", "2026-12-31T23:59:59+08:00", ended: "2027-01-01T00:20:00+08:00", metro))
        check(.wrongProvince, event("transit_trip", t0, ended: ended, province: "CN-BJ", metro))
        check(.inFuture, event("waste_sorting", t0), receivedAt: at("2027-03-01T07:54:00+08:00"))
        check(.tooOld, event("waste_sorting", t0), receivedAt: at("2027-03-31T08:00:01+08:00"))
        check(.kindNotCovered, event("skiing"))
        check(.missingData, event("transit_trip", t0, ended: ended, .init(mode: "metro")))
        check(.missingData, event("transit_trip", t0, ended: ended, .init(distanceMeters: 12_400)))
        check(.missingData, event("bike_ride", t0, .init(distanceMeters: 5_000)))
        check(.missingData, event("bus_ride", t0, .init(mode: "bus")))
        check(.missingData, event("recycling", t0, .init(weightGrams: 500)))
        check(.missingData, event("power_saving", t0, .init(consumptionWh: 500)))
        check(.missingData, event("power_own", t0, .init(consumptionWh: 500, days: 1)))
        check(.invalidData, event("transit_trip", t0, ended: ended, .init(mode: "metro", distanceMeters: -5)))
        check(.invalidData, event("transit_trip", t0, ended: "2027-03-01T07:00:00+08:00", metro))
        check(.modeNotCovered, event("transit_trip", t0, ended: ended, .init(mode: "ferry", distanceMeters: 12_400)))
        check(.materialNotCovered, event("recycling", t0, .init(material: "glass", weightGrams: 500)))
        check(.belowMinimum, event("transit_trip", t0, ended: ended, .init(mode: "metro", distanceMeters: 499)))
        check(.belowMinimum, event("bus_ride", t0, .init(mode: "bus", distanceMeters: 150)))
        check(.belowMinimum, event("recycling", t0, .init(material: "paper", weightGrams: 99)))
        check(.belowMinimum, event("walking", t0, .init(count: 99)))
        check(.aboveMaximum, event("transit_trip", t0, ended: "2027-03-01T12:00:00+08:00", .init(mode: "metro", distanceMeters: 200_001)))
        check(.aboveMaximum, event("recycling", t0, .init(material: "paper", weightGrams: 100_001)))
        check(.aboveMaximum, event("walking", t0, .init(count: 100_001)))
        check(.aboveMaximum, event("power_saving", t0, .init(consumptionWh: 500, days: 32)))
        check(.tooShort, event("bike_ride", t0, ended: "2027-03-01T08:00:59+08:00", .init(distanceMeters: 350)))
        check(.implausibleSpeed, event("transit_trip", t0, ended: "2027-03-01T08:05:00+08:00", metro))
        // Trust keys: a self-reported event of a partner_only activity (PartnerTrustTests covers the judge).
        let partnerOnly = try! RuleSetParser.parse(
            baseDocument.replacingOccurrences(of: "    method: per_event\n", with: "    method: per_event\n    sources: partner_only\n"))
        #expect(
            RuleEvaluator.evaluate(event: event("waste_sorting", t0), ruleSet: partnerOnly, usage: CapUsage(), receivedAt: at(t0)).rejection?.code
                == .selfReportNotAccepted)
        seen.insert(.selfReportNotAccepted)
        let lapsed = try! RuleSetParser.parse(
            baseDocument.replacingOccurrences(
                of: "effective_from: 2027-01-01T00:00:00+08:00\n",
                with: "effective_from: 2027-01-01T00:00:00+08:00\nvalid_until: 2027-02-01T00:00:00+08:00\n"))
        #expect(
            RuleEvaluator.evaluate(event: event("waste_sorting", t0), ruleSet: lapsed, usage: CapUsage(), receivedAt: at(t0)).rejection?.code
                == .rulesetExpired)
        seen.insert(.rulesetExpired)
        #expect(seen == Set(RejectionCode.allCases))
        #expect(judge(event("skiing")).rejection?.message.isEmpty == false)
    }

    /// A version approved until an instant credits nothing from that instant on (the bound is
    /// exclusive, to the millisecond); a renewed version takes over from its own effective_from,
    /// and a gap between the two credits nothing.
    @Test func approvalPeriodsAndRenewal() throws {
        func version(_ v: Int, from: String, until: String?) throws -> RuleSet {
            var document = baseDocument.replacingOccurrences(of: "version: 3\n", with: "version: \(v)\n")
                .replacingOccurrences(of: "effective_from: 2027-01-01T00:00:00+08:00\n", with: "effective_from: \(from)\n")
            if let until { document = document.replacingOccurrences(of: "timezone:", with: "valid_until: \(until)\ntimezone:") }
            return try RuleSetParser.parse(document)
        }
        let approved = try version(3, from: "2027-01-01T00:00:00+08:00", until: "2027-03-01T08:00:00+08:00")
        #expect(approved.validUntil == at("2027-03-01T08:00:00+08:00"))
        func verdict(_ history: RuleSetHistory, _ when: String) -> RejectionCode? {
            let e = event("waste_sorting", when)
            guard let inForce = history.inForce(at: e.occurredAt) else { return .noRuleset }
            let result = RuleEvaluator.evaluate(event: e, ruleSet: inForce, usage: CapUsage(), receivedAt: e.occurredAt)
            return result.rejection?.code
        }
        let alone = RuleSetHistory([approved])
        #expect(verdict(alone, "2027-03-01T07:59:59.999+08:00") == nil)
        #expect(verdict(alone, "2027-03-01T08:00:00+08:00") == .rulesetExpired)
        #expect(verdict(alone, "2027-06-01T00:00:00+08:00") == .rulesetExpired)
        // Renewed on time: version 4 takes over at the old valid_until, nothing lapses.
        let renewed = RuleSetHistory([approved, try version(4, from: "2027-03-01T08:00:00+08:00", until: nil)])
        #expect(verdict(renewed, "2027-03-01T08:00:00+08:00") == nil)
        #expect(verdict(renewed, "2027-03-01T07:59:59+08:00") == nil)
        // Renewed late: the gap credits nothing, the renewal credits from its effective_from.
        let late = RuleSetHistory([approved, try version(4, from: "2027-04-01T00:00:00+08:00", until: nil)])
        #expect(verdict(late, "2027-03-15T00:00:00+08:00") == .rulesetExpired)
        #expect(verdict(late, "2027-04-01T00:00:00+08:00") == nil)
        // The diff names the change of approval period.
        #expect(
            RuleSetDiff.diff(approved, try version(4, from: "2027-01-01T00:00:00+08:00", until: nil)).contains(
                "valid_until: 2027-03-01T08:00:00+08:00 → none"))
    }

    @Test func validUntilMustFollowEffectiveFrom() {
        for until in ["2027-01-01T00:00:00+08:00", "2026-12-31T00:00:00+08:00"] {
            let document = baseDocument.replacingOccurrences(of: "timezone:", with: "valid_until: \(until)\ntimezone:")
            do {
                _ = try RuleSetParser.parse(document)
                Issue.record("valid_until \(until) was accepted")
            } catch {
                // The issue points at the key's line (after effective_from, line 4) and names it.
                #expect(error.issues.map(\.code) == [.inconsistentRange] && error.issues.first?.path == "valid_until")
                #expect(error.issues.first?.line == 4)
            }
        }
    }

    @Test func limitsAreInclusive() {
        // Exactly the minimum distance, exactly 120 km/h, exactly the window: all accepted.
        #expect(judge(event("transit_trip", t0, ended: "2027-03-01T08:10:00+08:00", .init(mode: "metro", distanceMeters: 500))).award != nil)
        #expect(judge(event("transit_trip", t0, ended: "2027-03-01T08:05:00+08:00", .init(mode: "metro", distanceMeters: 10_000))).award != nil)
        #expect(
            code(event("transit_trip", t0, ended: "2027-03-01T08:05:00+08:00", .init(mode: "metro", distanceMeters: 10_001))) == .implausibleSpeed)
        #expect(judge(event("waste_sorting", t0), receivedAt: at("2027-03-31T08:00:00+08:00")).award != nil)
        #expect(judge(event("bike_ride", t0, ended: "2027-03-01T08:01:00+08:00", .init(distanceMeters: 300))).award != nil)
        #expect(judge(event("waste_sorting", t0), receivedAt: at("2027-03-01T07:55:00+08:00")).award != nil)
    }

    @Test func campaignWindowIsHalfOpen() throws {
        func metro(_ when: String) -> Award? {
            let start = at(when)
            let e = ActionEvent(
                kind: "transit_trip", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(1800),
                data: .init(mode: "metro", distanceMeters: 12_400))
            return judge(e).award
        }
        let inside = try #require(metro("2027-09-22T00:00:00+08:00"))
        #expect(inside.campaign == "Car-free day" && inside.multiplier == ExactDecimal(2))
        #expect(inside.basePoints == 57 && inside.pointsBeforeCaps == 115 && inside.gramsCO2e == 579)
        #expect(metro("2027-09-22T23:59:59+08:00")?.campaign == "Car-free day")
        #expect(metro("2027-09-21T23:59:59+08:00")?.campaign == nil)
        #expect(metro("2027-09-23T00:00:00+08:00")?.campaign == nil)
        // Not a campaign kind:
        #expect(judge(event("waste_sorting", "2027-09-22T12:00:00+08:00")).award?.campaign == nil)
        // A fractional multiplier floors once, after multiplying: 579 × 1.5 / 10 = 86.85 → 86.
        let r = try parseOK(baseDocument.replacingOccurrences(of: "multiplier: 2 }", with: "multiplier: 1.5 }"))
        let start = at("2027-09-22T10:00:00+08:00")
        let e = ActionEvent(
            kind: "transit_trip", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(1800),
            data: .init(mode: "metro", distanceMeters: 12_400))
        #expect(
            RuleEvaluator.evaluate(event: e, ruleSet: r, usage: CapUsage(), receivedAt: start.addingTimeInterval(3600)).award?.pointsBeforeCaps == 86)
    }

    @Test func versionInForceAtOccurredAt() throws {
        let v1 = try parseOK(baseDocument.replacingOccurrences(of: "version: 3", with: "version: 1"))
        let v2 = try parseOK(
            baseDocument.replacingOccurrences(of: "version: 3", with: "version: 2")
                .replacingOccurrences(of: "effective_from: 2027-01-01T00:00:00+08:00", with: "effective_from: 2027-06-01T00:00:00+08:00")
                .replacingOccurrences(of: "grams_per_km: 46.7", with: "grams_per_km: 50"))
        let history = RuleSetHistory([v1, v2])
        #expect(history.inForce(at: at("2026-12-31T23:59:59+08:00")) == nil)
        #expect(history.inForce(at: at("2027-01-01T00:00:00+08:00"))?.version == 1)
        #expect(history.inForce(at: at("2027-05-31T23:59:59.999+08:00"))?.version == 1)
        #expect(history.inForce(at: at("2027-06-01T00:00:00+08:00"))?.version == 2)
        // Synced after v2 took effect, an event of May is still judged by v1.
        let e = event("transit_trip", "2027-05-31T23:00:00+08:00", ended: "2027-05-31T23:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))
        let chosen = try #require(history.inForce(at: e.occurredAt))
        let a = RuleEvaluator.evaluate(event: e, ruleSet: chosen, usage: CapUsage(), receivedAt: at("2027-06-02T09:00:00+08:00")).award
        #expect(a?.ruleSetVersion == 1 && a?.gramsCO2e == 579)
    }

    @Test func eventShapeValidation() {
        let good = event("transit_trip", t0, ended: "2027-03-01T08:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))
        #expect(good.validateShape().isEmpty)
        let bad = ActionEvent(
            kind: "", province: "CN-GD", occurredAt: at(t0), endedAt: at("2027-03-01T07:00:00+08:00"),
            data: .init(mode: "", distanceMeters: -1, weightGrams: 0, count: 0, consumptionWh: -1, baselineWh: 2_000_000_000_000, days: 0))
        let found = bad.validateShape()
        #expect(
            Set(found.map(\.path)) == [
                "kind", "ended_at", "data.mode", "data.distance_m", "data.weight_g", "data.count", "data.consumption_wh", "data.baseline_wh",
                "data.days",
            ])
        #expect(found.allSatisfy { $0.code == .invalid })
    }
}
