import Foundation
import Testing

@testable import TanhuiCore

private func bike(_ when: String, meters: Int64 = 5_000, province: String = "CN-GD") -> ActionEvent {
    let start = at(when)
    return ActionEvent(
        kind: "bike_ride", province: province, occurredAt: start, endedAt: start.addingTimeInterval(3600), data: .init(distanceMeters: meters))
}

private func run(_ e: ActionEvent, _ r: RuleSet, _ usage: inout CapUsage) -> Award? {
    let a = RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: (e.endedAt ?? e.occurredAt).addingTimeInterval(60)).award
    if let a { usage.add(a.consumption) }
    return a
}

@Suite struct CapTests {
    let r = try! RuleSetParser.parse(baseDocument)

    @Test func windowsAndKeys() {
        let e = bike("2027-03-01T08:00:00+08:00")
        let windows = r.capWindows(for: e)
        #expect(windows.map(\.key) == ["bike_ride/day/2027-03-01", "*/day/2027-03-01"])
        #expect(windows.map(\.maxPoints) == [100, 500])
        #expect(windows[0].description == "bike_ride per day 2027-03-01: max 100 points")
        #expect(r.capWindows(for: event("skiing")).isEmpty)
    }

    @Test func capReducesAwardToWhatRemains() throws {
        let e = bike("2027-03-01T08:00:00+08:00")  // 215 g → 21 points
        var usage = CapUsage()
        let windows = r.capWindows(for: e)
        usage[windows[0]] = .init(points: 90, events: 5)
        let a = try #require(RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: e.endedAt!).award)
        #expect(a.pointsBeforeCaps == 21 && a.pointsAwarded == 10 && a.capped)
        #expect(a.capsApplied.map(\.key) == ["bike_ride/day/2027-03-01"])
        #expect(a.consumption.map(\.points) == [10, 10])
        usage[windows[0]] = .init(points: 100, events: 6)
        let full = try #require(RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: e.endedAt!).award)
        #expect(full.pointsAwarded == 0 && full.capped && full.consumption.isEmpty)
        // Exactly at the edge: 79 used + 21 = 100 is not capped.
        usage[windows[0]] = .init(points: 79, events: 1)
        let edge = try #require(RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: e.endedAt!).award)
        #expect(edge.pointsAwarded == 21 && !edge.capped)
    }

    @Test func allKindsCapSpansKinds() throws {
        var usage = CapUsage()
        let waste = event("waste_sorting", "2027-03-01T09:00:00+08:00")
        usage[r.capWindows(for: waste)[0]] = .init(points: 480, events: 10)
        #expect(run(waste, r, &usage)?.pointsAwarded == 4)
        let metro = event(
            "transit_trip", "2027-03-01T10:00:00+08:00", ended: "2027-03-01T10:30:00+08:00", .init(mode: "metro", distanceMeters: 12_400))
        let a = try #require(run(metro, r, &usage))
        #expect(a.pointsAwarded == 16 && a.capsApplied.map(\.key) == ["*/day/2027-03-01"])
    }

    @Test func shanghaiDayIsNotTheUTCDay() throws {
        // 23:30 and 00:30 Shanghai time fall on 2027-03-01 15:30Z and 16:30Z: one UTC day, two Shanghai days.
        let late = bike("2027-03-01T23:30:00+08:00", meters: 15_000)  // 645 g → 64 points
        let early = bike("2027-03-02T00:30:00+08:00", meters: 15_000)
        var usage = CapUsage()
        #expect(run(late, r, &usage)?.pointsAwarded == 64)
        let second = try #require(run(early, r, &usage))
        #expect(second.pointsAwarded == 64 && !second.capped)
        #expect(r.capWindows(for: early).first?.key == "bike_ride/day/2027-03-02")

        let utc = try parseOK(baseDocument.replacingOccurrences(of: "timezone: Asia/Shanghai", with: "timezone: UTC"))
        var utcUsage = CapUsage()
        #expect(run(late, utc, &utcUsage)?.pointsAwarded == 64)
        let capped = try #require(run(early, utc, &utcUsage))
        #expect(capped.pointsAwarded == 36 && capped.capped)
        #expect(utc.capWindows(for: early).first?.key == "bike_ride/day/2027-03-01")
    }

    @Test func weekAndMonthBoundaries() throws {
        let doc = baseDocument.replacingOccurrences(
            of: "  - { period: day, max_points: 500 }",
            with: "  - { period: week, max_points: 70 }\n  - { kind: waste_sorting, period: month, max_points: 6, max_events: 50 }")
        let r = try parseOK(doc)
        let sunday = bike("2027-02-28T23:30:00+08:00", meters: 15_000)
        let monday = bike("2027-03-01T00:30:00+08:00", meters: 15_000)
        #expect(r.capWindows(for: sunday).map(\.key) == ["bike_ride/day/2027-02-28", "*/week/2027-W08"])
        #expect(r.capWindows(for: monday).map(\.key) == ["bike_ride/day/2027-03-01", "*/week/2027-W09"])
        var usage = CapUsage()
        #expect(run(sunday, r, &usage)?.pointsAwarded == 64)
        #expect(run(bike("2027-02-28T08:00:00+08:00", meters: 15_000), r, &usage)?.pointsAwarded == 6)
        #expect(run(monday, r, &usage)?.pointsAwarded == 64)

        let feb = event("waste_sorting", "2027-02-28T23:59:59+08:00")
        let mar = event("waste_sorting", "2027-03-01T00:00:00+08:00")
        #expect(r.capWindows(for: feb).map(\.key) == ["*/week/2027-W08", "waste_sorting/month/2027-02"])
        #expect(r.capWindows(for: mar).map(\.key) == ["*/week/2027-W09", "waste_sorting/month/2027-03"])
        var u2 = CapUsage()
        #expect(run(feb, r, &u2)?.pointsAwarded == 4)
        #expect(run(feb, r, &u2)?.pointsAwarded == 2)
        #expect(run(mar, r, &u2)?.pointsAwarded == 4)
    }

    @Test func zoneWithDaylightSavingUsesTheOffsetOfEachInstant() throws {
        let berlin = try parseOK(baseDocument.replacingOccurrences(of: "timezone: Asia/Shanghai", with: "timezone: Europe/Berlin"))
        func day(_ when: String) -> String? { berlin.capWindows(for: event("waste_sorting", when)).first?.key }
        #expect(day("2027-01-15T23:30:00+01:00") == "*/day/2027-01-15")
        #expect(day("2027-03-28T23:30:00+02:00") == "*/day/2027-03-28")  // after the switch to summer time
        #expect(day("2027-03-28T22:30:00Z") == "*/day/2027-03-29")
        #expect(day("2027-03-27T23:30:00Z") == "*/day/2027-03-28")  // 00:30 CET, before the switch
    }

    @Test func isoWeekYearLabels() throws {
        let doc = baseDocument.replacingOccurrences(of: "  - { period: day, max_points: 500 }", with: "  - { period: week, max_points: 500 }")
        let r = try parseOK(doc)
        #expect(r.capWindows(for: event("waste_sorting", "2027-01-01T12:00:00+08:00")).map(\.key) == ["*/week/2026-W53"])
        #expect(r.capWindows(for: event("waste_sorting", "2027-01-04T00:00:00+08:00")).map(\.key) == ["*/week/2027-W01"])
    }

    @Test func maxEventsCountsOnlyEventsThatEarn() throws {
        let doc = baseDocument.replacingOccurrences(
            of: "  - { period: day, max_points: 500 }", with: "  - { kind: waste_sorting, period: day, max_events: 4 }")
        let r = try parseOK(doc)
        var usage = CapUsage()
        for i in 0..<4 {
            #expect(run(event("waste_sorting", "2027-03-01T0\(i):00:00+08:00"), r, &usage)?.pointsAwarded == 4)
        }
        let fifth = try #require(run(event("waste_sorting", "2027-03-01T09:00:00+08:00"), r, &usage))
        #expect(fifth.pointsAwarded == 0 && fifth.capped && fifth.capsApplied.first?.maxEvents == 4)
        #expect(run(event("waste_sorting", "2027-03-02T09:00:00+08:00"), r, &usage)?.pointsAwarded == 4)
    }

    @Test func propertyAwardsNeverExceedCaps() throws {
        let doc = baseDocument.replacingOccurrences(
            of: "  - { period: day, max_points: 500 }",
            with:
                "  - { period: day, max_points: 500 }\n  - { period: week, max_points: 1500 }\n  - { kind: recycling, period: month, max_points: 2000, max_events: 10 }"
        )
        let r = try parseOK(doc)
        var rng = SplitMix64(seed: 2027)
        var usage = CapUsage()
        var totals: [CapWindow.ID: (points: Int64, events: Int64, cap: CapWindow)] = [:]
        let base = at("2027-03-01T00:00:00+08:00")
        for _ in 0..<1000 {
            let start = base.addingTimeInterval(Double(Int.random(in: 0..<(60 * 86_400), using: &rng)))
            let e: ActionEvent
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                e = ActionEvent(
                    kind: "bike_ride", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(3600),
                    data: .init(distanceMeters: .random(in: 300...20_000, using: &rng)))
            case 1:
                e = ActionEvent(
                    kind: "transit_trip", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(7200),
                    data: .init(mode: Bool.random(using: &rng) ? "metro" : "bus", distanceMeters: .random(in: 500...200_000, using: &rng)))
            case 2:
                e = ActionEvent(
                    kind: "recycling", province: "CN-GD", occurredAt: start,
                    data: .init(material: "aluminium", weightGrams: .random(in: 100...5_000, using: &rng)))
            default: e = ActionEvent(kind: "waste_sorting", province: "CN-GD", occurredAt: start)
            }
            let a = try #require(RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: start.addingTimeInterval(8000)).award)
            #expect(a.pointsAwarded >= 0 && a.pointsAwarded <= a.pointsBeforeCaps)
            #expect(a.capped == (a.pointsAwarded < a.pointsBeforeCaps))
            usage.add(a.consumption)
            for c in a.consumption {
                let t = totals[c.window.id] ?? (0, 0, c.window)
                totals[c.window.id] = (t.points + c.points, t.events + c.events, c.window)
            }
        }
        #expect(!totals.isEmpty)
        for (_, t) in totals {
            if let m = t.cap.maxPoints { #expect(t.points <= m, "\(t.cap.key)") }
            if let m = t.cap.maxEvents { #expect(t.events <= m, "\(t.cap.key)") }
        }
        #expect(totals.values.contains { $0.cap.maxPoints == 500 && $0.points == 500 }, "some day should have hit the 500 cap")
    }

    @Test func propertyMoreDistanceNeverEarnsLess() throws {
        var rng = SplitMix64(seed: 46_7)
        let start = at("2027-03-01T08:00:00+08:00")
        for _ in 0..<1000 {
            let mode = Bool.random(using: &rng) ? "metro" : "bus"
            let d1 = Int64.random(in: 500...200_000, using: &rng)
            let d2 = Int64.random(in: d1...200_000, using: &rng)
            func grams(_ d: Int64) -> Int64? {
                let e = ActionEvent(
                    kind: "transit_trip", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(3 * 3600),
                    data: .init(mode: mode, distanceMeters: d))
                return RuleEvaluator.evaluate(event: e, ruleSet: r, usage: CapUsage(), receivedAt: start.addingTimeInterval(4 * 3600)).award?
                    .gramsCO2e
            }
            let g1 = try #require(grams(d1))
            let g2 = try #require(grams(d2))
            #expect(g1 <= g2, "\(mode) \(d1) m → \(g1) g but \(d2) m → \(g2) g")
        }
    }
}

@Suite struct AlignedCountersTests {
    @Test func alignedCountersMatchTheDictionaryForm() throws {
        let r = try RuleSetParser.parse(baseDocument)
        var rng = SplitMix64(seed: 7)
        let base = at("2027-03-01T00:00:00+08:00")
        for _ in 0..<300 {
            let start = base.addingTimeInterval(Double(Int.random(in: 0..<(10 * 86_400), using: &rng)))
            let e = ActionEvent(
                kind: "bike_ride", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(3600),
                data: .init(distanceMeters: .random(in: 300...15_000, using: &rng)))
            let windows = r.capWindows(for: e)
            var usage = CapUsage()
            var counters: [CapUsage.Counter] = []
            for w in windows {
                let c = CapUsage.Counter(points: .random(in: 0...600, using: &rng), events: .random(in: 0...5, using: &rng))
                usage[w] = c
                counters.append(c)
            }
            let received = start.addingTimeInterval(7200)
            #expect(
                RuleEvaluator.evaluate(event: e, ruleSet: r, usage: usage, receivedAt: received)
                    == RuleEvaluator.evaluate(event: e, ruleSet: r, counters: counters, receivedAt: received))
        }
    }
}
