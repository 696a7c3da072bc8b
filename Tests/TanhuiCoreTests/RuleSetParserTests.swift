import Foundation
import Testing

@testable import TanhuiCore

private struct Expected: Hashable, CustomStringConvertible {
    let path: String
    let code: ValidationIssue.Code
    let line: Int?
    let column: Int?
    init(_ path: String, _ code: ValidationIssue.Code, _ line: Int?, _ column: Int?) {
        self.path = path
        self.code = code
        self.line = line
        self.column = column
    }
    init(_ i: ValidationIssue) { self.init(i.path, i.code, i.line, i.column) }
    var description: String { "\(path) \(code.rawValue) \(line.map(String.init) ?? "-"):\(column.map(String.init) ?? "-")" }
}

@Suite struct RuleSetParserTests {
    @Test func parsesBaseDocument() throws {
        let r = try parseOK(baseDocument)
        #expect(r.province == "CN-GD")
        #expect(r.version == 3)
        #expect(r.effectiveFrom == at("2026-12-31T16:00:00Z"))
        #expect(r.timeZone.identifier == "Asia/Shanghai")
        #expect(r.gramsPerPoint == 10)
        #expect(
            r.activities.map(\.kind) == [
                "transit_trip", "bike_ride", "bus_ride", "waste_sorting", "recycling", "walking", "power_saving", "power_own",
            ])
        guard case .perDistance(let transit) = r.activities[0].method, case .byName(let modes) = transit.gramsPerKm else {
            Issue.record("transit_trip should be per_distance by mode")
            return
        }
        #expect(modes["metro"] == (try ExactDecimal(parsing: "46.7")))
        #expect(transit.limits.minDistanceMeters == 500)
        #expect(r.caps.count == 2 && r.caps[1].kind == nil)
        #expect(r.campaigns.first?.multiplier == ExactDecimal(2))
    }

    @Test func reportsEveryProblemOfAYAMLDocumentWithPositions() {
        let doc = """
            province: CN-44
            version: 0
            effective_from: 2027-01-01T00:00:00
            timezone: Mars/Base
            grams_per_point: 10
            submission_window_days: 30
            methodology: "m"
            colour: blue
            activities:
              - kind: transit_trip
                method: per_distance
                modes: { metro: { grams_per_km: 4670 }, bus: { grams_per_km: -5 } }
              - kind: transit_trip
                method: per_event
                grams_per_event: "40"
              - kind: recycling
                method: per_weight
                materials: { paper: { grams_per_kg: 1e3 } }
                max_wieght_kg: 5
            caps:
              - { kind: flying, period: day, max_points: 100 }
            campaigns:
              - { name: A, kinds: [transit_trip], from: 2027-09-22T00:00:00+08:00, to: 2027-09-24T00:00:00+08:00, multiplier: 2 }
              - { name: B, kinds: [transit_trip], from: 2027-09-23T00:00:00+08:00, to: 2027-09-25T00:00:00+08:00, multiplier: 1.5 }
            """
        let found = issues(doc)
        let expected: Set<Expected> = [
            Expected("province", .unknownProvince, 1, 11),
            Expected("version", .notPositive, 2, 10),
            Expected("effective_from", .badTimestamp, 3, 17),
            Expected("timezone", .unknownTimezone, 4, 11),
            Expected("colour", .unknownKey, 8, 1),
            Expected("activities[0].modes.metro.grams_per_km", .factorTooHigh, 12, 37),
            Expected("activities[0].modes.bus.grams_per_km", .notPositive, 12, 66),
            Expected("activities[1].kind", .duplicateKind, 13, 11),
            Expected("activities[1].grams_per_event", .wrongType, 15, 22),
            Expected("activities[2].materials.paper.grams_per_kg", .badDecimal, 18, 41),
            Expected("activities[2].max_wieght_kg", .unknownKey, 19, 5),
            Expected("caps[0].kind", .capUnknownKind, 21, 13),
            Expected("campaigns[1]", .overlappingCampaigns, 24, 45),
        ]
        #expect(Set(found.map(Expected.init)) == expected, "\(found.map(\.description).joined(separator: "\n"))")
        #expect(found.count == expected.count)
        #expect(found.first { $0.path == "province" }?.message.contains("CN-GD") == true)
        #expect(found.first { $0.path == "activities[2].max_wieght_kg" }?.message.contains("max_weight_kg") == true)
        #expect(found.first { $0.path == "effective_from" }?.message.contains("UTC offset") == true)
    }

    @Test func reportsProblemsOfAJSONDocumentWithPositions() {
        let doc = """
            {
              "province": "CN-GD",
              "version": 1,
              "effective_from": "2027-01-01T00:00:00+08:00",
              "timezone": "Asia/Shanghai",
              "grams_per_point": 10,
              "submission_window_days": 30,
              "methodology": "m",
              "activities": [
                {"kind": "bike_ride", "method": "per_distance", "grams_per_km": 4300},
                {"kind": "waste_sorting", "method": "per_event", "grams_per_event": "40", "extra": true}
              ],
              "caps": [{"kind": "walking", "period": "day", "max_points": 10}]
            }
            """
        let found = issues(doc)
        let expected: Set<Expected> = [
            Expected("activities[0].grams_per_km", .factorTooHigh, 10, 69),
            Expected("activities[1].grams_per_event", .wrongType, 11, 73),
            Expected("activities[1].extra", .unknownKey, 11, 79),
            Expected("caps[0].kind", .capUnknownKind, 13, 21),
        ]
        #expect(Set(found.map(Expected.init)) == expected, "\(found.map(\.description).joined(separator: "\n"))")
    }

    @Test func jsonAndYAMLGiveTheSameRuleSet() throws {
        let yaml = """
            province: CN-CQ
            version: 2
            effective_from: 2027-01-01T00:00:00+08:00
            timezone: Asia/Shanghai
            grams_per_point: 10
            submission_window_days: 30
            methodology: 渝 碳惠通
            activities:
              - kind: bike_ride
                method: per_distance
                grams_per_km: 43
              - kind: walking
                method: per_count
                grams_per_unit: 0.02
                unit: steps
            caps:
              - { kind: bike_ride, period: day, max_points: 100, max_events: 4 }
            """
        let json = """
            {"province": "CN-CQ", "version": 2, "effective_from": "2027-01-01T00:00:00+08:00",
             "timezone": "Asia/Shanghai", "grams_per_point": 10, "submission_window_days": 30,
             "methodology": "\\u6e1d \\u78b3\\u60e0\\u901a",
             "activities": [
            \t{"kind": "bike_ride", "method": "per_distance", "grams_per_km": 43},
            \t{"kind": "walking", "method": "per_count", "grams_per_unit": 0.02, "unit": "steps"}],
             "caps": [{"kind": "bike_ride", "period": "day", "max_points": 100, "max_events": 4}]}
            """
        let a = try parseOK(yaml)
        let b = try parseOK(json)
        #expect(a == b)
        #expect(b.methodology == "渝 碳惠通")
        // The JSON number 0.02 is read from its text, not through a Double.
        guard case .perCount(let walk) = b.activities[1].method else { return }
        #expect(walk.gramsPerUnit.mantissa == 2 && walk.gramsPerUnit.scale == 2)
    }

    @Test func acceptsDataAndRejectsInvalidUTF8() throws {
        _ = try RuleSetParser.parse(Data(("\u{FEFF}" + baseDocument).utf8))
        let bad = Data([0x70, 0x72, 0xFF, 0xFE])
        #expect(throws: RuleSetInvalid.self) { try RuleSetParser.parse(bad) }
        do { _ = try RuleSetParser.parse(bad) } catch { #expect(error.issues.first?.code == .notUTF8) }
    }

    @Test func refusesAnchorsAndAliases() {
        let anchored = baseDocument.replacingOccurrences(of: "  - kind: waste_sorting", with: "  - &w\n    kind: waste_sorting")
        #expect(issues(anchored).map(\.code) == [.aliasNotAllowed])
        let bomb = """
            a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
            b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
            c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
            d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
            e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
            f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
            g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
            h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
            i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
            """
        let found = issues(bomb)
        #expect(found.map(\.code) == [.aliasNotAllowed])
        #expect(found.first?.line == 1)
        let merge = baseDocument + "\nextra: &e { a: 1 }\nmore: *e\n"
        #expect(issues(merge).map(\.code) == [.aliasNotAllowed])
    }

    @Test func refusesOversizeAndDeepDocuments() {
        let big = baseDocument + "\n" + String(repeating: "# padding\n", count: 30_000)
        #expect(issues(big).map(\.code) == [.documentTooLarge])
        #expect(throws: RuleSetInvalid.self) { try RuleSetParser.parse(Data(big.utf8)) }
        let deepBlock = String(repeating: "- ", count: 900) + "1\n"
        #expect(issues(deepBlock).map(\.code) == [.tooDeep])
        let deepFlow = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        #expect(issues(deepFlow).map(\.code) == [.tooDeep])
        let manyActivities = baseDocument.replacingOccurrences(
            of: "activities:\n",
            with: "activities:\n" + String(repeating: "  - { kind: x, method: per_event, grams_per_event: 1 }\n", count: 70))
        #expect(issues(manyActivities).map(\.code) == [.tooMany])
    }

    @Test func syntaxErrorsCarryPositions() {
        let found = issues("province: CN-GD\nactivities: [1, 2\n")
        #expect(found.count == 1)
        #expect(found.first?.code == .syntax)
        #expect(found.first?.line != nil)
        let dup = issues("province: CN-GD\nprovince: CN-BJ\n")
        #expect(dup.map(\.code) == [.syntax])
        #expect(dup.first?.message.contains("province") == true)
        #expect(issues("").map(\.code) == [.missing])
        #expect(issues("- 1\n- 2\n").map(\.code) == [.wrongType])
    }

    @Test func missingRequiredFieldsAreListed() {
        let found = issues("province: CN-GD\n")
        let paths = Set(found.filter { $0.code == .missing }.map(\.path))
        #expect(paths == ["version", "effective_from", "timezone", "grams_per_point", "submission_window_days", "methodology", "activities"])
        #expect(found.allSatisfy { $0.line == 1 })
    }

    @Test(arguments: [
        (
            "grams_per_km: 43\n", "grams_per_km: 43\n    modes: { a: { grams_per_km: 1 } }\n", "activities[1].modes",
            ValidationIssue.Code.conflictingKeys
        ),
        ("method: per_event\n    grams_per_event: 40", "method: teleport\n    grams_per_event: 40", "activities[3].method", .unknownMethod),
        ("grams_per_event: 40", "grams_per_event: 0", "activities[3].grams_per_event", .notPositive),
        ("grams_per_event: 40", "grams_per_event: 6000", "activities[3].grams_per_event", .factorTooHigh),
        ("grams_per_point: 10", "grams_per_point: 10.5", "grams_per_point", .wrongType),
        ("grams_per_point: 10", "grams_per_point: \"10\"", "grams_per_point", .wrongType),
        ("submission_window_days: 30", "submission_window_days: 9999", "submission_window_days", .outOfRange),
        ("timezone: Asia/Shanghai", "timezone: CST", "timezone", .unknownTimezone),
        ("timezone: Asia/Shanghai", "timezone: GMT+8", "timezone", .unknownTimezone),
        ("effective_from: 2027-01-01T00:00:00+08:00", "effective_from: 2027-01-01", "effective_from", .badTimestamp),
        ("effective_from: 2027-01-01T00:00:00+08:00", "effective_from: 2027-02-30T00:00:00+08:00", "effective_from", .badTimestamp),
        ("max_speed_kmh: 25", "max_speed_kmh: 2500", "activities[1].max_speed_kmh", .absurdValue),
        (
            "min_distance_km: 0.5\n    max_distance_km: 200", "min_distance_km: 5\n    max_distance_km: 2", "activities[0].min_distance_km",
            .inconsistentRange
        ),
        ("multiplier: 2 }", "multiplier: 0.5 }", "campaigns[0].multiplier", .outOfRange),
        ("multiplier: 2 }", "multiplier: 20 }", "campaigns[0].multiplier", .absurdValue),
        ("to: 2027-09-23T00:00:00+08:00", "to: 2027-09-22T00:00:00+08:00", "campaigns[0].to", .inconsistentRange),
        ("kinds: [transit_trip, bike_ride]", "kinds: [transit_trip, skiing]", "campaigns[0].kinds[1]", .campaignUnknownKind),
        ("- { period: day, max_points: 500 }", "- { period: day }", "caps[1].max_points", .missing),
        ("- { period: day, max_points: 500 }", "- { period: fortnight, max_points: 500 }", "caps[1].period", .wrongType),
        ("- { period: day, max_points: 500 }", "- { kind: bike_ride, period: day, max_events: 5 }", "caps[1]", .duplicateCap),
        ("- kind: walking", "- kind: Walking", "activities[5].kind", .badIdentifier),
        ("baseline: { type: fixed, wh_per_day: 8000 }", "baseline: { type: median }", "activities[6].baseline.type", .wrongType),
        ("baseline: { type: own_history }", "baseline: { type: own_history, wh_per_day: 5 }", "activities[7].baseline.wh_per_day", .conflictingKeys),
        ("methodology: \"test methodology\"", "methodology: \"\"", "methodology", .empty),
        ("version: 3", "version: [3]", "version", .wrongType),
    ])
    func singleMutationReportsOneIssue(original: String, replacement: String, path: String, code: ValidationIssue.Code) {
        #expect(baseDocument.contains(original))
        let found = issues(baseDocument.replacingOccurrences(of: original, with: replacement))
        #expect(found.map(\.path) == [path], "\(found)")
        #expect(found.map(\.code) == [code], "\(found)")
        #expect(found.first?.line != nil)
    }

    @Test func highFactorCanBeAcknowledged() throws {
        let doc = baseDocument.replacingOccurrences(of: "grams_per_event: 40", with: "grams_per_event: 6000\n    acknowledge_high_factor: true")
        let r = try parseOK(doc)
        #expect(r.activity(kind: "waste_sorting")?.acknowledgeHighFactor == true)
    }

    @Test func publicationChecksNameTheEarliestInstant() throws {
        let r = try parseOK(baseDocument)
        #expect(RuleSetValidator.checkPublication(r, latestPublishedVersion: nil, earliestAllowedEffectiveFrom: nil).isEmpty)
        #expect(
            RuleSetValidator.checkPublication(r, latestPublishedVersion: 2, earliestAllowedEffectiveFrom: at("2027-01-01T00:00:00+08:00")).isEmpty)
        let found = RuleSetValidator.checkPublication(r, latestPublishedVersion: 3, earliestAllowedEffectiveFrom: at("2027-03-01T04:00:00Z"))
        #expect(found.map(\.code) == [.versionNotIncreasing, .retroactiveEffectiveFrom])
        #expect(found[0].path == "version" && found[0].line == 2 && found[0].column == 10)
        #expect(found[1].path == "effective_from" && found[1].line == 3 && found[1].column == 17)
        #expect(found[1].message.contains("2027-03-01T12:00:00+08:00"))
    }

    @Test func provinceCodes() {
        #expect(Province.names.count == 34)
        for code in ["CN-BJ", "CN-SH", "CN-GD", "CN-CQ", "CN-TJ", "CN-HE", "CN-HK", "CN-MO", "CN-TW", "CN-XZ", "CN-NM"] {
            #expect(Province.isKnown(code))
        }
        #expect(!Province.isKnown("CN-44"))
        #expect(Province.suggestion(for: "CN-44") == "CN-GD")
        #expect(Province.suggestion(for: "cn-bj") == "CN-BJ")
    }
}

@Suite struct RuleSetParserRobustnessTests {
    /// Seeded random byte edits of a valid document: the parser must answer (rule set or issues), never crash,
    /// and every issue must carry a code and a message.
    @Test func randomEditsNeverCrash() {
        var rng = SplitMix64(seed: 3869)
        let source = Array(baseDocument.utf8)
        let alphabet = Array("{}[]:-,&*!|>'\"#%@` \n\t0123456789.eE+abcxyz_\u{00}".utf8)
        var rejected = 0
        for _ in 0..<500 {
            var bytes = source
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[i] = alphabet.randomElement(using: &rng)!
                case 1: bytes.remove(at: i)
                default: bytes.insert(alphabet.randomElement(using: &rng)!, at: i)
                }
            }
            do {
                _ = try RuleSetParser.parse(Data(bytes))
            } catch {
                rejected += 1
                #expect(!error.issues.isEmpty)
                #expect(error.issues.allSatisfy { !$0.message.isEmpty })
            }
        }
        #expect(rejected > 250)
    }
}
