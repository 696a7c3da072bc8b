import Foundation
import TanhuiCore
import TanhuiPostgres
import Testing

/// A seeded random workload from concurrent devices, pushed through a real server, checked
/// against an independent model: a small reference implementation of the verdict and cap rules
/// written from the README and the Guangdong sample rule set (Schema/rulesets/CN-GD.yaml),
/// sharing no code with the service and never reading its verdicts or its `cap_usage` to
/// decide what is right.
@Suite("Ledger under a randomized concurrent workload, against an independent model", .needsDatabase)
struct LedgerPropertyTests {
    typealias S = ServedLedger

    /// One event as the device sends it (the model's input).
    struct Event: Sendable, Equatable {
        enum Kind: String, Sendable { case transit_trip, bike_ride, waste_sorting }
        var id: String
        var kind: Kind
        var start: Date
        var minutes: Double
        var meters: Int
        var evidence: String?

        var end: Date? { kind == .waste_sorting ? nil : start.addingTimeInterval(minutes * 60) }
        var json: [String: Any] {
            var object: [String: Any] = ["id": id, "kind": kind.rawValue, "province": "CN-GD", "occurred_at": LedgerFixtures.iso(start)]
            switch kind {
            case .transit_trip: object["data"] = ["mode": "metro", "distance_m": meters]
            case .bike_ride: object["data"] = ["distance_m": meters]
            case .waste_sorting: object["data"] = [String: Any]()
            }
            if let end { object["ended_at"] = LedgerFixtures.iso(end) }
            if let evidence { object["evidence"] = ["source": "sz_metro_card", "ref": evidence] }
            return object
        }
        /// Same id and same content (what the README calls the same canonical content).
        func sameContent(_ other: Event) -> Bool {
            kind == other.kind && Int(start.timeIntervalSince1970) == Int(other.start.timeIntervalSince1970) && minutes == other.minutes
                && meters == other.meters && evidence == other.evidence
        }
    }

    /// A verdict as the model predicts it, and as the API reports it.
    struct Outcome: Sendable, Equatable, CustomStringConvertible {
        var status: String
        var code: String?
        var originalStatus: String?
        var points: Int?
        var grams: Int?
        var capped: Bool?
        var description: String {
            "\(status)/\(code ?? "-")\(originalStatus.map { " (was \($0))" } ?? "")\(points.map { " \($0) pt" } ?? "")\(grams.map { " \($0) g" } ?? "")\(capped == true ? " capped" : "")"
        }
        init(status: String, code: String? = nil, originalStatus: String? = nil, points: Int? = nil, grams: Int? = nil, capped: Bool? = nil) {
            self.status = status
            self.code = code
            self.originalStatus = originalStatus
            self.points = points
            self.grams = grams
            self.capped = capped
        }
        init(_ result: [String: Any]) {
            let award = result["award"] as? [String: Any]
            self.init(
                status: result["status"] as? String ?? "?", code: result["code"] as? String, originalStatus: result["original_status"] as? String,
                points: award?["points"] as? Int, grams: award?["grams_co2e"] as? Int, capped: award?["capped"] as? Bool)
        }
    }

    /// The reference implementation. Rules, from the README ("Rule sets", "Statuses and codes")
    /// and CN-GD version 1: metro 46.7 g/km (0.5–200 km, ≤ 120 km/h), bike 43 g/km
    /// (0.05–15 km, ≥ 60 s, ≤ 25 km/h), waste sorting 10 g per event; 10 g per point; a
    /// submission window of 30 days; caps per Asia/Shanghai calendar day (UTC+8, no DST): bike
    /// rides 100 points, all kinds 500 points, reducing (never rejecting) an award to what is
    /// left. Ids are unique: the same id and content from the same citizen is a `duplicate`
    /// repeating the first verdict; any other reuse is `conflict/id_reused` and not stored.
    /// Evidence is credited once, to anyone; trips and rides of one citizen never overlap
    /// (half-open intervals) an accepted one. Order of judgement for one event, when several
    /// rules would apply: the rule set's rejections, then evidence, then overlap (the README
    /// does not say; the workload below never lets two of them apply to one event).
    struct Model {
        struct Stored {
            var citizen: Int
            var event: Event
            var outcome: Outcome
        }
        var stored: [String: Stored] = [:]
        var claimedEvidence = Set<String>()
        var acceptedIntervals: [Int: [(Date, Date)]] = [:]
        var used: [String: Int] = [:]
        var balance: [Int: Int] = [:]

        static let windowDays = 30.0

        static func shanghaiDay(_ date: Date) -> Int { Int(floor((date.timeIntervalSince1970 + 8 * 3600) / 86_400)) }

        /// Grams and the rule-set verdict of one event, caps aside.
        static let effectiveFrom = Date(timeIntervalSince1970: 1_767_196_800)  // 2026-01-01T00:00:00+08:00
        /// "Car-free day 2026": ×2 for transit and bike from 2026-09-22T00:00+08:00 to 09-23.
        static let campaign = Date(timeIntervalSince1970: 1_790_006_400)..<Date(timeIntervalSince1970: 1_790_092_800)

        static func evaluate(_ event: Event, receivedAt: Date) -> (grams: Int, code: String?) {
            if event.start < effectiveFrom { return (0, "no_ruleset") }
            if receivedAt.timeIntervalSince(event.start) > windowDays * 86_400 { return (0, "too_old") }
            switch event.kind {
            case .waste_sorting:
                return (10, nil)
            case .transit_trip:
                let hours = event.minutes / 60
                if event.meters < 500 { return (0, "below_minimum") }
                if event.meters > 200_000 { return (0, "above_maximum") }
                if Double(event.meters) / 1000 / hours > 120 { return (0, "implausible_speed") }
                return (event.meters * 467 / 10_000, nil)  // floor(m × 46.7 / 1000), exactly
            case .bike_ride:
                let hours = event.minutes / 60
                if event.meters < 50 { return (0, "below_minimum") }
                if event.meters > 15_000 { return (0, "above_maximum") }
                if event.minutes * 60 < 60 { return (0, "too_short") }
                if Double(event.meters) / 1000 / hours > 25 { return (0, "implausible_speed") }
                return (event.meters * 43 / 1000, nil)
            }
        }

        mutating func judge(_ event: Event, citizen: Int, receivedAt: Date) -> Outcome {
            if let earlier = stored[event.id] {
                if earlier.citizen == citizen && earlier.event.sameContent(event) {
                    var outcome = earlier.outcome
                    outcome.originalStatus = outcome.status
                    outcome.status = "duplicate"
                    return outcome
                }
                return Outcome(status: "conflict", code: "id_reused")
            }
            let (grams, rejection) = Self.evaluate(event, receivedAt: receivedAt)
            let outcome: Outcome
            if let rejection {
                outcome = Outcome(status: "rejected", code: rejection)
            } else if let evidence = event.evidence, claimedEvidence.contains(evidence) {
                outcome = Outcome(status: "conflict", code: "evidence_claimed")
            } else if let end = event.end, (acceptedIntervals[citizen] ?? []).contains(where: { $0.0 < end && event.start < $0.1 }) {
                outcome = Outcome(status: "conflict", code: "overlap")
            } else {
                let multiplier = event.kind != .waste_sorting && Self.campaign.contains(event.start) ? 2 : 1
                let before = grams * multiplier / 10  // one floor: the multiplier applies before the division
                let day = Self.shanghaiDay(event.start)
                var windows = ["\(citizen)/*/\(day)": 500]
                if event.kind == .bike_ride { windows["\(citizen)/bike/\(day)"] = 100 }
                let left = windows.map { max(0, $0.value - used[$0.key, default: 0]) }.min()!
                let points = min(before, left)
                for key in windows.keys { used[key, default: 0] += points }
                balance[citizen, default: 0] += points
                if let evidence = event.evidence { claimedEvidence.insert(evidence) }
                if let end = event.end { acceptedIntervals[citizen, default: []].append((event.start, end)) }
                outcome = Outcome(status: "accepted", points: points, grams: grams, capped: points < before)
            }
            stored[event.id] = Stored(citizen: citizen, event: event, outcome: outcome)
            return outcome
        }
    }

    /// One lane's batches: (citizen index, events), for two citizens of its own.
    static func workload(seed: UInt64, lane: Int, batches count: Int, now: Date) -> [(Int, [Event])] {
        var random = SplitMix64(seed: seed &+ UInt64(lane) &* 1_000_003)
        let citizens = [lane * 2, lane * 2 + 1]
        var sent: [(citizen: Int, event: Event)] = []
        var batches: [(Int, [Event])] = []
        var slot = 0
        let origin = now.addingTimeInterval(-14 * 86_400)
        for _ in 0..<count {
            let citizen = citizens[random.below(2)]
            var items: [Event] = []
            for _ in 0..<(1 + random.below(8)) {
                slot += 1
                let start = origin.addingTimeInterval(Double(slot) * 3000 + Double(random.below(600)))
                let own = sent.filter { $0.citizen == citizen }
                let pick = random.below(20)
                switch pick {
                case 0 where !own.isEmpty:  // a retry of one of one's own events
                    items.append(own[random.below(own.count)].event)
                case 1 where !sent.isEmpty:  // an id reused with other content
                    var reused = sent[random.below(sent.count)].event
                    reused.start = start
                    reused.kind = .waste_sorting
                    reused.evidence = nil
                    items.append(reused)
                case 2 where sent.contains { $0.citizen != citizen }:  // a lane-mate's event verbatim
                    let others = sent.filter { $0.citizen != citizen }
                    items.append(others[random.below(others.count)].event)
                case 3 where own.contains { $0.event.kind != .waste_sorting }:  // a second device records an earlier ride
                    let trips = own.filter { $0.event.kind != .waste_sorting }
                    let earlier = trips[random.below(trips.count)].event
                    items.append(
                        Event(
                            id: UUID().uuidString.lowercased(), kind: .bike_ride, start: earlier.start.addingTimeInterval(300), minutes: 30,
                            meters: 4_000))
                case 4:
                    // below_minimum
                    items.append(Event(id: UUID().uuidString.lowercased(), kind: .transit_trip, start: start, minutes: 40, meters: 300))
                case 5:
                    // implausible_speed
                    items.append(Event(id: UUID().uuidString.lowercased(), kind: .bike_ride, start: start, minutes: 20, meters: 14_000))
                case 6:
                    items.append(
                        Event(
                            id: UUID().uuidString.lowercased(), kind: .waste_sorting, start: now.addingTimeInterval(-35 * 86_400 - Double(slot)),
                            minutes: 0, meters: 0))  // too_old
                case 7...10:
                    items.append(
                        Event(
                            id: UUID().uuidString.lowercased(), kind: .transit_trip, start: start, minutes: 40, meters: 2_000 + random.below(60_000),
                            evidence: "L\(lane)-TXN-\(random.below(6))"))
                case 11...14:
                    items.append(
                        Event(id: UUID().uuidString.lowercased(), kind: .bike_ride, start: start, minutes: 40, meters: 1_000 + random.below(9_000)))
                default:
                    items.append(Event(id: UUID().uuidString.lowercased(), kind: .waste_sorting, start: start, minutes: 0, meters: 0))
                }
            }
            sent += items.map { (citizen, $0) }
            batches.append((citizen, items))
        }
        return batches
    }

    @Test("4 concurrent lanes of random batches: every verdict, stored row and balance equals the model's", arguments: [7 as UInt64, 42])
    func randomizedWorkload(seed: UInt64) async throws {
        try await S.with { h in
            let now = Date()
            let citizens = (0..<8).map { _ in UUID() }
            var minted: [String] = []
            for citizen in citizens { minted.append(try await S.token(citizen)) }
            let tokens = minted
            let lanes = (0..<4).map { Self.workload(seed: seed, lane: $0, batches: 10, now: now) }
            // The lanes push concurrently; each lane's batches go in order.
            let observed = try await withThrowingTaskGroup(of: (Int, [[Outcome]]).self) { group in
                for (lane, batches) in lanes.enumerated() {
                    let sendable = batches.map { ($0.0, $0.1) }
                    group.addTask {
                        var outcomes: [[Outcome]] = []
                        for (citizen, events) in sendable {
                            let reply = try await h.push(events.map(\.json), token: tokens[citizen])
                            #expect(reply.status == 200, "\(reply.body.prefix(300))")
                            let results = try S.results(reply)
                            #expect(results.map { ($0["id"] as? String)?.lowercased() } == events.map(\.id))
                            outcomes.append(results.map(Outcome.init))
                        }
                        return (lane, outcomes)
                    }
                }
                return try await group.reduce(into: [Int: [[Outcome]]]()) { $0[$1.0] = $1.1 }
            }

            var model = Model()
            for (lane, batches) in lanes.enumerated() {
                for ((citizen, events), outcomes) in zip(batches, observed[lane] ?? []) {
                    for (event, outcome) in zip(events, outcomes) {
                        let expected = model.judge(event, citizen: citizen, receivedAt: now)
                        #expect(
                            outcome == expected, "lane \(lane) citizen \(citizen) \(event.kind) \(event.id): service \(outcome), model \(expected)")
                    }
                }
            }
            let stored = model.stored.count
            // Every verdict kind the model knows was exercised (the workload is not vacuous).
            let codes = Set(model.stored.values.map { "\($0.outcome.status)/\($0.outcome.code ?? "-")" })
            for needed in [
                "accepted/-", "conflict/evidence_claimed", "conflict/overlap", "rejected/below_minimum", "rejected/implausible_speed",
                "rejected/too_old",
            ] {
                #expect(codes.contains(needed), "seed \(seed) never produced \(needed)")
            }
            #expect(model.stored.values.contains { $0.outcome.capped == true }, "no cap ever bound")

            // The database holds exactly the model's stored verdicts.
            let pool = TestDatabase.makePool(url: h.url, size: 1)
            let rows: [String: (String, String?)] = try await pool.withConnection { connection in
                var map: [String: (String, String?)] = [:]
                for row in try connection.query("SELECT event_id::text, status, code FROM events").rows {
                    map[try row.decode(0, as: String.self)] = (try row.decode(1, as: String.self), try row.decode(2, as: String?.self))
                }
                return map
            }
            #expect(rows.count == stored)
            for (id, entry) in model.stored {
                #expect(
                    rows[id]?.0 == entry.outcome.status && rows[id]?.1 == entry.outcome.code,
                    "\(id): stored \(rows[id].map { "\($0)" } ?? "nothing"), model \(entry.outcome)")
            }
            // Balances: the fold of the entries, the cache, and what pull reports.
            for (index, citizen) in citizens.enumerated() {
                let account = "citizen:" + citizen.uuidString.lowercased()
                let entries = try await h.count("SELECT coalesce(sum(points), 0)::int FROM ledger_entries WHERE account = \(account)")
                #expect(
                    entries == model.balance[index, default: 0], "citizen \(index): entries \(entries), model \(model.balance[index, default: 0])")
                let balances = try await h.pull(token: tokens[index])["balances"] as? [[String: Any]] ?? []
                #expect((balances.first?["points"] as? Int ?? 0) == model.balance[index, default: 0])
            }
            #expect(
                try await h.count(
                    "SELECT count(*) FROM citizen_accounts a WHERE balance_points <> (SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.province = a.province AND e.account = 'citizen:' || a.citizen_id)"
                ) == 0)
            await pool.shutdown()
            let audit = try await CommandRunner.tanhui(["audit"], databaseURL: h.url)
            #expect(audit.exitCode == 0, "\(audit.stdout)\(audit.stderr)")
        }
    }

    @Test("one citizen's batches racing from 4 devices: each day's bike points are exactly min(cap, sum), whatever the order")
    func capsHoldUnderConcurrency() async throws {
        try await S.with { h in
            let citizen = UUID()
            var minted: [String] = []
            for device in 0..<4 { minted.append(try await S.token(citizen, device: "device-\(device)")) }
            let tokens = minted
            // Three Asia/Shanghai days, 20…18 days ago; each device rides twice a day, never
            // overlapping another ride: 8 rides × floor(10 km × 43 g/km / 10) = 8 × 43 = 344
            // points a day before the 100-point bike cap.
            let today = Model.shanghaiDay(Date())
            func dayStart(_ day: Int) -> Date { Date(timeIntervalSince1970: Double(day) * 86_400 - 8 * 3600) }
            let days = [today - 20, today - 19, today - 18]
            let replies = try await withThrowingTaskGroup(of: [Outcome].self) { group in
                for (device, token) in tokens.enumerated() {
                    group.addTask {
                        var all: [Outcome] = []
                        for day in days {
                            let rides = (0..<2).map { ride in
                                Event(
                                    id: UUID().uuidString.lowercased(), kind: .bike_ride,
                                    start: dayStart(day).addingTimeInterval(3600 + Double(device * 2 + ride) * 4500), minutes: 40, meters: 10_000
                                ).json
                            }
                            all += try S.results(try await h.push(rides, token: token)).map(Outcome.init)
                        }
                        return all
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(replies.count == 24)
            #expect(replies.allSatisfy { $0.status == "accepted" })
            let awarded: [Int] = replies.compactMap(\.points)
            #expect(awarded.count == 24 && awarded.allSatisfy { (0...43).contains($0) })
            let total: Int = awarded.reduce(0, +)
            let expectedTotal: Int = 3 * min(100, 8 * 43)
            #expect(total == expectedTotal)
            // Per day, from the ledger itself (not from cap_usage).
            for day in days {
                let from = dayStart(day)
                let to = dayStart(day + 1)
                let points = try await h.count(
                    """
                    SELECT coalesce(sum(t.points), 0)::int FROM ledger_transactions t JOIN events e ON e.province = t.province AND e.event_id = t.event_id
                    WHERE t.kind = 'award' AND e.citizen_id = \(citizen) AND e.occurred_at >= \(from) AND e.occurred_at < \(to)
                    """)
                #expect(points == 100, "day \(day): \(points) bike points, cap 100")
            }
        }
    }
}
