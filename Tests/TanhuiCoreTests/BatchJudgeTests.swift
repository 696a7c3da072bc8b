import Foundation
import Testing

@testable import TanhuiCore

/// The pure judge of a push: one test per verdict it gives, exact instants, checked sums,
/// and a property test against an independent model of ids and caps.
@Suite("BatchJudge: verdicts from stored facts")
struct BatchJudgeTests {
    static let citizen = UUID(uuidString: "11111111-1111-4111-8111-111111111111")!
    static let received = "2027-03-02T12:00:00+08:00"

    static func ms(_ text: String) -> Int64 {
        guard case .success(let value) = Instant.parseRFC3339(text) else { fatalError(text) }
        return value
    }

    static func history(_ document: String = baseDocument) throws -> [String: RuleSetHistory] {
        ["CN-GD": RuleSetHistory([try parseOK(document)])]
    }

    static func input(_ object: [String: Any], hash: String? = nil) -> BatchJudge.Input {
        switch EventWire.decode(object) {
        case .success(let wire): return .event(.init(wire: wire, contentSHA256: hash ?? (object["id"] as! String) + "-content"))
        case .failure(let invalid): return .invalid(id: object["id"] as? String, issues: invalid.issues)
        }
    }

    static func trip(
        _ id: UUID = UUID(), from start: String, to end: String?, kind: String = "transit_trip", evidence: String? = nil
    ) -> [String: Any] {
        var object: [String: Any] = [
            "id": id.uuidString, "kind": kind, "province": "CN-GD", "occurred_at": start,
            "data": ["mode": kind == "bus_ride" ? "bus" : "metro", "distance_m": 5000],
        ]
        if let end { object["ended_at"] = end }
        if let evidence { object["evidence"] = ["source": "metro", "ref": evidence] }
        return object
    }

    static func waste(_ id: UUID = UUID(), at time: String = "2027-03-02T09:00:00+08:00") -> [String: Any] {
        ["id": id.uuidString, "kind": "waste_sorting", "province": "CN-GD", "occurred_at": time]
    }

    static func judge(
        _ inputs: [BatchJudge.Input], facts: BatchJudge.Facts = .init(), sentAt: String? = nil, document: String = baseDocument
    ) throws -> BatchJudge.Outcome {
        let prepared = BatchJudge.prepare(inputs, receivedAtMs: ms(received), sentAtMs: sentAt.map(ms), histories: try history(document))
        return BatchJudge.judge(prepared, citizen: citizen, facts: facts)
    }

    static func codes(_ outcome: BatchJudge.Outcome) -> [String] {
        outcome.verdicts.map { $0.code ?? $0.status.rawValue }
    }

    @Test("accepted awards number the citizen's transactions after the stored last_seq and move the balance")
    func acceptedNumbersTransactions() throws {
        var facts = BatchJudge.Facts()
        facts.accounts["CN-GD"] = .init(points: 100, gramsCO2e: 1000, lastSeq: 7)
        let outcome = try Self.judge([Self.input(Self.waste()), Self.input(Self.waste(at: "2027-03-02T10:00:00+08:00"))], facts: facts)
        #expect(Self.codes(outcome) == ["accepted", "accepted"])
        #expect(outcome.awards.map(\.citizenSeq) == [8, 9])
        #expect(outcome.accounts["CN-GD"] == .init(points: 108, gramsCO2e: 1080, lastSeq: 9))
        #expect(outcome.usageIncrements["CN-GD"]?["*/day/2027-03-02"] == CapUsage.Counter(points: 8, events: 2))
    }

    @Test("duplicate of a stored verdict, id_reused for other content or another citizen, duplicate within the batch")
    func duplicatesAndReuse() throws {
        let id = UUID()
        var facts = BatchJudge.Facts()
        facts.existing[.init(province: "CN-GD", id: id)] = .init(
            citizen: Self.citizen, contentSHA256: id.uuidString + "-content", status: .rejected, code: "too_old", message: "m", award: nil)
        let other = UUID()
        facts.existing[.init(province: "CN-GD", id: other)] = .init(
            citizen: UUID(), contentSHA256: other.uuidString + "-content", status: .accepted, code: nil, message: nil, award: nil)
        let fresh = UUID()
        let outcome = try Self.judge(
            [
                Self.input(Self.waste(id)),
                Self.input(Self.waste(id), hash: "changed"),
                Self.input(Self.waste(other)),
                Self.input(Self.waste(fresh)),
                Self.input(Self.waste(fresh)),
                Self.input(Self.waste(fresh), hash: "changed"),
            ], facts: facts)
        #expect(outcome.verdicts.map(\.status) == [.duplicate, .conflict, .conflict, .accepted, .duplicate, .conflict])
        #expect(Self.codes(outcome) == ["too_old", "id_reused", "id_reused", "accepted", "duplicate", "id_reused"])
        #expect(outcome.verdicts[0].originalStatus == .rejected && outcome.verdicts[4].originalStatus == .accepted)
        #expect(outcome.events.count == 1 && outcome.awards.count == 1)
    }

    @Test("evidence credited once: against stored claims and within the batch")
    func evidenceClaimed() throws {
        var facts = BatchJudge.Facts()
        facts.claimedEvidence.insert(.init(province: "CN-GD", source: "metro", ref: "T-1"))
        let outcome = try Self.judge(
            [
                Self.input(Self.trip(from: "2027-03-02T08:00:00+08:00", to: "2027-03-02T08:20:00+08:00", evidence: "T-1")),
                Self.input(Self.trip(from: "2027-03-02T09:00:00+08:00", to: "2027-03-02T09:20:00+08:00", evidence: "T-2")),
                Self.input(Self.trip(from: "2027-03-02T10:00:00+08:00", to: "2027-03-02T10:20:00+08:00", evidence: "T-2")),
            ], facts: facts)
        #expect(Self.codes(outcome) == ["evidence_claimed", "accepted", "evidence_claimed"])
        #expect(outcome.events.map(\.status) == [.conflict, .accepted, .conflict], "conflicts are stored as final verdicts")
    }

    @Test("overlap in integer milliseconds: back-to-back trips never overlap under any clock offset; a trip without ended_at cannot escape")
    func overlapIsExact() throws {
        // Device clocks ahead by offsets with many fractional-second digits: `Date` seconds
        // arithmetic rounds these; epoch milliseconds do not.
        for aheadMs: Int64 in [0, 121_001, 123_456_789, 987_654_321, 1_000_000_007] {
            let sentAt = Instant.format(Self.ms(Self.received) + aheadMs, offsetSeconds: 0)
            let outcome = try Self.judge(
                [
                    Self.input(Self.trip(from: "2027-03-02T08:00:00.001+08:00", to: "2027-03-02T08:30:00.001+08:00")),
                    Self.input(Self.trip(from: "2027-03-02T08:30:00.001+08:00", to: "2027-03-02T09:00:00.003+08:00")),
                    Self.input(Self.trip(from: "2027-03-02T09:00:00.002+08:00", to: "2027-03-02T09:10:00+08:00")),
                ], sentAt: aheadMs == 0 ? nil : sentAt)
            #expect(Self.codes(outcome) == ["accepted", "accepted", "overlap"], "device ahead by \(aheadMs) ms")
        }
        var facts = BatchJudge.Facts()
        facts.acceptedTrips["CN-GD"] = [.init(startMs: Self.ms("2027-03-02T07:00:00+08:00"), endMs: Self.ms("2027-03-02T07:30:00+08:00"))]
        let open = try Self.judge(
            [
                Self.input(Self.trip(from: "2027-03-02T07:10:00+08:00", to: nil, kind: "bus_ride")),
                Self.input(Self.trip(from: "2027-03-02T07:30:00+08:00", to: nil, kind: "bus_ride")),
                Self.input(Self.trip(from: "2027-03-02T07:29:00+08:00", to: "2027-03-02T07:40:00+08:00", kind: "bus_ride")),
            ], facts: facts)
        #expect(Self.codes(open) == ["overlap", "accepted", "overlap"])
        #expect(open.events.map(\.occupiesInterval) == [false, true, false])
    }

    @Test("clock: trusted within ±120 s, corrected beyond; corrected future is clock_skew and not stored; outside 2000–2100 is invalid")
    func clockPolicy() throws {
        let inWindow = try Self.judge([Self.input(Self.waste(at: "2027-03-02T12:04:00+08:00"))], sentAt: "2027-03-02T11:58:01+08:00")
        #expect(Self.codes(inWindow) == ["accepted"], "119 s of skew is trusted, 4 min ahead is within tolerance")
        let corrected = try Self.judge([Self.input(Self.waste(at: "2027-03-02T13:00:00+08:00"))], sentAt: "2027-03-02T13:00:00+08:00")
        #expect(Self.codes(corrected) == ["accepted"])
        #expect(corrected.events[0].occurredMs == Self.ms("2027-03-02T12:00:00+08:00"))
        let skewed = try Self.judge([Self.input(Self.waste(at: "2027-03-02T12:06:00+08:00"))])
        #expect(Self.codes(skewed) == ["clock_skew"])
        #expect(skewed.events.isEmpty)
        let far = try Self.judge([
            Self.input(Self.waste(at: "9999-12-31T23:59:59Z")),
            Self.input(Self.waste(at: "0001-01-01T00:00:00+08:00")),
            Self.input(Self.waste(at: "1999-12-31T23:59:59.999Z")),
            Self.input(Self.waste(at: "2027-03-02T09:00:00+08:00")),
        ])
        #expect(Self.codes(far) == ["invalid", "invalid", "invalid", "accepted"])
        #expect(far.events.count == 1)
        // A phone reset to 1970: its 1970 instants are corrected to the present and judged.
        let reset = try Self.judge([Self.input(Self.waste(at: "1970-01-01T00:10:00Z"))], sentAt: "1970-01-01T00:20:00Z")
        #expect(Self.codes(reset) == ["accepted"])
    }

    @Test("no rule set in force, and rule rejections pass through with their codes")
    func ruleOutcomes() throws {
        let outcome = try Self.judge([
            Self.input(Self.waste(at: "2026-12-31T23:59:59+08:00")),
            Self.input([
                "id": UUID().uuidString, "kind": "transit_trip", "province": "CN-GD", "occurred_at": "2027-03-02T08:00:00+08:00",
                "ended_at": "2027-03-02T08:10:00+08:00", "data": ["mode": "metro", "distance_m": 100],
            ]),
            Self.input(["id": UUID().uuidString, "kind": "teleport", "province": "CN-GD", "occurred_at": "2027-03-02T08:00:00+08:00"]),
        ])
        #expect(Self.codes(outcome) == ["no_ruleset", "below_minimum", "kind_not_covered"])
        #expect(outcome.events.count == 3, "rule verdicts are final and stored")
    }

    @Test("sums are overflow-checked: an award that would overflow a balance or a cap counter is rejected, never a trap")
    func overflowChecked() throws {
        var facts = BatchJudge.Facts()
        facts.accounts["CN-GD"] = .init(points: .max - 3, gramsCO2e: 0, lastSeq: 1)
        let outcome = try Self.judge(
            [Self.input(Self.waste()), Self.input(Self.waste(at: "2027-03-02T10:00:00+08:00"))], facts: facts,
            document: baseDocument.replacingOccurrences(of: "  - { period: day, max_points: 500 }\n", with: ""))
        #expect(Self.codes(outcome) == ["invalid_data", "invalid_data"], "4 points do not fit")
        #expect(outcome.accounts["CN-GD"] == .init(points: .max - 3, gramsCO2e: 0, lastSeq: 1))
        var usage = CapUsage()
        let window = try parseOK(baseDocument).capWindows(for: event("waste_sorting", "2027-03-02T09:00:00+08:00"))[0]
        usage[window] = .init(points: 0, events: .max)
        facts = BatchJudge.Facts()
        facts.usage["CN-GD"] = usage
        #expect(Self.codes(try Self.judge([Self.input(Self.waste())], facts: facts)) == ["invalid_data"])
        usage.add([CapConsumption(window: window, points: 5, events: 1)])
        #expect(usage[window].events == .max, "counters saturate instead of trapping")
    }

    @Test("property: verdicts and cap accounting match an independent model of ids and daily caps", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func modelProperty(seed: UInt64) throws {
        // Model, written from the README: an id is judged once per province (same content:
        // duplicate of the first verdict; other content: id_reused); waste sorting earns
        // 40 g = 4 points, and the all-kinds day cap of 500 points limits what a day pays.
        var random = SplitMix64(seed: seed)
        var ids: [UUID] = []
        var firstPoints: [UUID: Int64] = [:]
        var dayPoints: [String: Int64] = [:]
        var facts = BatchJudge.Facts()
        for _ in 0..<20 {
            var inputs: [BatchJudge.Input] = []
            var expected: [(status: Verdict.Status, points: Int64?)] = []
            for _ in 0..<Int.random(in: 1...40, using: &random) {
                let reuse = !ids.isEmpty && Int.random(in: 0..<4, using: &random) == 0
                let id = reuse ? ids[Int.random(in: 0..<ids.count, using: &random)] : UUID()
                let day = Int.random(in: 1...2, using: &random)
                let time = "2027-03-0\(day)T0\(Int.random(in: 1...9, using: &random)):00:00+08:00"
                let changed = reuse && Int.random(in: 0..<2, using: &random) == 0
                inputs.append(Self.input(Self.waste(id, at: time), hash: changed ? "other" : id.uuidString + "-content"))
                if let points = firstPoints[id] {
                    expected.append(changed ? (.conflict, nil) : (.duplicate, points))
                } else {
                    let used = dayPoints[String(day), default: 0]
                    let points = min(4, 500 - used)
                    dayPoints[String(day)] = used + (points > 0 ? points : 0)
                    firstPoints[id] = points
                    ids.append(id)
                    expected.append((.accepted, points))
                }
            }
            let prepared = BatchJudge.prepare(inputs, receivedAtMs: Self.ms(Self.received), sentAtMs: nil, histories: try Self.history())
            let outcome = BatchJudge.judge(prepared, citizen: Self.citizen, facts: facts)
            #expect(outcome.verdicts.map(\.status) == expected.map(\.status), "seed \(seed)")
            #expect(outcome.verdicts.map { $0.status == .conflict ? nil : $0.award?.points } == expected.map(\.points), "seed \(seed)")
            // Carry the batch's writes into the next batch's facts, as the database would.
            for row in outcome.events {
                let award = outcome.awards.first { $0.eventID == row.item.wire.event.id }
                facts.existing[.init(province: "CN-GD", id: row.item.wire.event.id)] = .init(
                    citizen: Self.citizen, contentSHA256: row.item.contentSHA256, status: row.status, code: row.code, message: row.message,
                    award: award.map {
                        AwardSummary(
                            gramsCO2e: $0.award.gramsCO2e, points: $0.award.pointsAwarded, province: "CN-GD", ruleSetVersion: 3,
                            capped: $0.award.capped)
                    })
            }
            var usage = facts.usage["CN-GD"] ?? CapUsage()
            for award in outcome.awards { usage.add(award.award.consumption) }
            facts.usage["CN-GD"] = usage
            facts.accounts = outcome.accounts
        }
        let paid = dayPoints.values.reduce(0, +)
        #expect(facts.accounts["CN-GD"]?.points == paid)
        #expect(dayPoints.values.allSatisfy { $0 <= 500 })
    }
}
