import Foundation
import TanhuiCore

extension SplitMix64 {
    /// The benchmarks' historical seeding (the seed is scrambled first), kept so a seed
    /// still reproduces the workloads recorded in BENCHMARKS.md.
    init(workloadSeed seed: UInt64) { self.init(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678) }
}

/// Citizens and events for the benchmarks, as the CN-GD rule set accepts them.
enum Workload {
    static let province = "CN-GD"
    static let materials = ["aluminium", "pet", "hdpe", "glass"]

    /// Citizen `index` of workload `seed` (distinct seeds never share citizens: the seed and
    /// index are spelled out after the first group). The first group is mixed, so ids spread
    /// over the uuid space as devices' random v4 ids do: with the seed there, every bench
    /// citizen began `00`, all fell in one of the audit's citizen ranges (one fold worker did
    /// every citizen while the other idled), and index pages filled in seed order.
    static func citizen(seed: Int, index: Int) -> UUID {
        let seedBits = UInt32(truncatingIfNeeded: seed)
        var mixer = SplitMix64(seed: UInt64(seedBits) << 32 | UInt64(UInt32(truncatingIfNeeded: index)))
        let spread = UInt32(truncatingIfNeeded: mixer.next() >> 32)
        return UUID(
            uuidString: String(
                format: "%08x-%04x-4%03x-8%03x-%012llx", spread, seedBits >> 16, (seedBits >> 4) & 0xfff, seedBits & 0xf, UInt64(index)))!
    }

    static func iso(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// One event as the wire JSON the sync API takes (built by hand: cheap and exact).
    struct Event {
        var id: UUID
        var kind: String
        var start: Date
        var end: Date?
        var data: [(String, String)]  // key, JSON literal
        var evidence: (source: String, ref: String)?

        var json: String {
            var s =
                "{\"id\":\"\(id.uuidString.lowercased())\",\"kind\":\"\(kind)\",\"province\":\"\(Workload.province)\",\"occurred_at\":\"\(Workload.iso(start))\""
            if let end { s += ",\"ended_at\":\"\(Workload.iso(end))\"" }
            s += ",\"data\":{" + data.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
            if let evidence { s += ",\"evidence\":{\"source\":\"\(evidence.source)\",\"ref\":\"\(evidence.ref)\"}" }
            return s + "}"
        }
    }

    static func body(_ events: [Event], sentAt: Date) -> [UInt8] {
        Array(("{\"sent_at\":\"\(iso(sentAt))\",\"events\":[" + events.map(\.json).joined(separator: ",") + "]}").utf8)
    }

    /// An event of `kind` starting at `start` that fits in `slot` seconds.
    static func event(kind: String, start: Date, slot: Double, tag: String, rng: inout SplitMix64) -> Event {
        let id = UUID()
        switch kind {
        case "transit_trip":
            let minutes = Double.random(in: 15...min(60, slot / 60 - 1), using: &rng)
            let km = Double.random(in: 2...(minutes * 0.8), using: &rng)  // ≤ 48 km/h
            let mode = Bool.random(using: &rng) ? "metro" : "bus"
            return Event(
                id: id, kind: kind, start: start, end: start.addingTimeInterval(minutes * 60),
                data: [("mode", "\"\(mode)\""), ("distance_m", "\(Int(km * 1000))")], evidence: ("sz_metro_card", "T-\(tag)"))
        case "bike_ride":
            let minutes = Double.random(in: 10...min(40, slot / 60 - 1), using: &rng)
            let km = Double.random(in: 1...(minutes * 0.25), using: &rng)  // ≤ 15 km/h
            return Event(
                id: id, kind: kind, start: start, end: start.addingTimeInterval(minutes * 60),
                data: [("distance_m", "\(Int(min(km, 14) * 1000))")], evidence: ("sz_bike_share", "B-\(tag)"))
        case "recycling":
            let material = materials[Int.random(in: 0..<materials.count, using: &rng)]
            return Event(
                id: id, kind: kind, start: start, end: nil,
                data: [("material", "\"\(material)\""), ("weight_g", "\(Int.random(in: 200...5000, using: &rng))")], evidence: nil)
        case "power_saving":
            return Event(
                id: id, kind: kind, start: start, end: nil,
                data: [("consumption_wh", "\(Int.random(in: 5000...8000, using: &rng))"), ("baseline_wh", "1200"), ("days", "7")], evidence: nil)
        default:
            return Event(id: id, kind: "waste_sorting", start: start, end: nil, data: [], evidence: nil)
        }
    }

    /// The kind of event `i` in a realistic mix: 40 % transit, 25 % bike, 15 % waste sorting,
    /// 15 % recycling, 5 % power saving.
    static func kind(_ roll: Int) -> String {
        switch roll % 20 {
        case 0..<8: "transit_trip"
        case 8..<13: "bike_ride"
        case 13..<16: "waste_sorting"
        case 16..<19: "recycling"
        default: "power_saving"
        }
    }

    /// A week of one citizen's events, oldest first, ending an hour ago: `count` events, one of
    /// them (about 1 %) a bike ride overlapping the transit trip before it (a conflict).
    static func backlog(seed: Int, citizen: Int, count: Int, now: Date) -> [Event] {
        var rng = SplitMix64(workloadSeed: UInt64(seed) << 32 | UInt64(citizen))
        let span = 7 * 86_400.0 - 7200
        let slot = span / Double(count)
        let first = now.addingTimeInterval(-span - 3600)
        var events: [Event] = []
        events.reserveCapacity(count)
        let conflictAt = count >= 10 ? count / 2 : -1
        for i in 0..<count {
            let start = first.addingTimeInterval(Double(i) * slot)
            let tag = "\(seed)-\(citizen)-\(i)"
            if i == conflictAt, let trip = events.last(where: { $0.kind == "transit_trip" }) {
                // Same citizen on a bike while on the metro: the server must flag an overlap.
                events.append(
                    Event(
                        id: UUID(), kind: "bike_ride", start: trip.start.addingTimeInterval(60), end: trip.end,
                        data: [("distance_m", "1500")], evidence: ("sz_bike_share", "B-\(tag)")))
                continue
            }
            var kind = kind(rng.below(20))
            if i == conflictAt - 1 { kind = "transit_trip" }
            events.append(event(kind: kind, start: start, slot: slot, tag: tag, rng: &rng))
        }
        return events
    }

    /// Today's few events of one citizen (daily sync): 1–5 events in the last hours.
    static func daily(seed: Int, citizen: Int, now: Date) -> [Event] {
        var rng = SplitMix64(workloadSeed: UInt64(seed) << 32 | UInt64(citizen) | 1 << 63)
        let count = Int.random(in: 1...5, using: &rng)
        let slot = 3600.0
        return (0..<count).map { i in
            let start = now.addingTimeInterval(-Double(count - i) * slot - 600)
            return event(kind: kind(rng.below(20)), start: start, slot: slot, tag: "d\(seed)-\(citizen)-\(i)", rng: &rng)
        }
    }
}
