import Foundation
import Testing

@testable import TanhuiCore

/// The sample rule sets shipped in Schema/rulesets must stay valid, and broken copies must be reported precisely.
@Suite struct SampleRuleSetTests {
    static let directory: URL = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Schema/rulesets")

    static func load(_ province: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent("\(province).yaml"), encoding: .utf8)
    }

    /// 1-based line and column of the first occurrence of `needle`.
    static func position(of needle: String, in text: String) -> (line: Int, column: Int)? {
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let r = line.range(of: needle) {
                return (i + 1, line[..<r.lowerBound].unicodeScalars.count + 1)
            }
        }
        return nil
    }

    static let cases: [(province: String, factor: String, path: String)] = [
        ("CN-GD", "grams_per_km: 46.7", "activities[0].modes.metro.grams_per_km"),
        ("CN-BJ", "grams_per_km: 46.7", "activities[0].modes.rail.grams_per_km"),
        ("CN-SH", "grams_per_km: 46.7", "activities[1].grams_per_km"),
        ("CN-CQ", "grams_per_km: 46.7", "activities[0].modes.rail.grams_per_km"),
    ]

    @Test(arguments: cases)
    func sampleParsesCleanly(province: String, factor: String, path: String) throws {
        let r = try parseOK(try Self.load(province))
        #expect(r.province == province)
        #expect(r.version == 1)
        #expect(r.effectiveFrom == at("2026-01-01T00:00:00+08:00"))
        #expect(r.timeZone.identifier == "Asia/Shanghai")
        for kind in ["transit_trip", "bike_ride", "waste_sorting", "recycling", "power_saving"] {
            #expect(r.activity(kind: kind) != nil, "\(province) lacks \(kind)")
        }
        // One sample shows expiry by lot; the others' points never expire (the tests built on them count on it).
        #expect(r.pointsValidity == (province == "CN-CQ" ? .endOfYearAfter(2) : nil))
    }

    @Test(arguments: cases)
    func brokenCopiesReportPathAndLine(province: String, factor: String, path: String) throws {
        let text = try Self.load(province)
        let pos = try #require(Self.position(of: factor, in: text))
        let negative = text.replacingOccurrences(of: factor, with: "grams_per_km: -5")  // every occurrence
        let found = issues(negative)
        let first = try #require(found.first { $0.path == path })
        #expect(first.code == .notPositive)
        #expect(first.line == pos.line && first.column == pos.column + "grams_per_km: ".count)
        #expect(found.allSatisfy { $0.code == .notPositive })

        let tzLine = try #require(Self.position(of: "timezone: Asia/Shanghai", in: text)).line
        let unknown = text.replacingOccurrences(of: "timezone: Asia/Shanghai\n", with: "timezone: Asia/Shanghai\ncolour: green\n")
        let u = issues(unknown)
        #expect(u.map(\.code) == [.unknownKey])
        #expect(u.first?.path == "colour" && u.first?.line == tzLine + 1 && u.first?.column == 1)
    }

    @Test func guangdongMetroWorkedExample() throws {
        let r = try parseOK(try Self.load("CN-GD"))
        let start = at("2026-03-02T08:00:00+08:00")
        let e = ActionEvent(
            kind: "transit_trip", province: "CN-GD", occurredAt: start, endedAt: start.addingTimeInterval(1800),
            data: .init(mode: "metro", distanceMeters: 12_400))
        let a = try #require(RuleEvaluator.evaluate(event: e, ruleSet: r, usage: CapUsage(), receivedAt: start.addingTimeInterval(3600)).award)
        #expect(a.gramsCO2e == 579 && a.pointsAwarded == 57)
        // Shenzhen-style own-history power saving: (9 000 − 7 500) Wh × 386.9 g/kWh = 580.35 g → 580 g → 58 points.
        let p = ActionEvent(kind: "power_saving", province: "CN-GD", occurredAt: start, data: .init(consumptionWh: 7_500, baselineWh: 9_000, days: 1))
        #expect(RuleEvaluator.evaluate(event: p, ruleSet: r, usage: CapUsage(), receivedAt: start).award?.pointsAwarded == 58)
    }
}
