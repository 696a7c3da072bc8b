import Foundation

/// One cap's calendar period containing an event, in the rule set's zone.
///
/// Periods are integers so evaluation never formats strings: `day` counts local days since
/// 1970-01-01, `week` counts ISO weeks (Monday start) since Monday 1969-12-29, `month` is
/// year × 12 + month − 1. `key` renders it for storage.
package struct CapWindow: Sendable, Hashable, CustomStringConvertible {
    /// Identity of the counter a window reads and writes; the same across rule-set versions,
    /// so a new version mid-day keeps the day's usage.
    package struct ID: Sendable, Hashable {
        /// nil = all kinds together.
        package let kind: String?
        package let period: CapPeriod
        package let periodIndex: Int64

        /// Hashes the period only: equal IDs still hash equally, and the few kinds sharing a period
        /// merely share a bucket, while evaluation skips hashing the kind string.
        package func hash(into hasher: inout Hasher) {
            hasher.combine(periodIndex &* 4 &+ Int64(period == .day ? 0 : period == .week ? 1 : 2))
        }
    }

    /// Index into `RuleSet.caps`.
    package let capIndex: Int
    package let id: ID
    package let maxPoints: Int64?
    package let maxEvents: Int64?

    package var kind: String? { id.kind }
    package var period: CapPeriod { id.period }

    /// Stable storage key, e.g. `bike_ride/day/2027-03-01`, `*/week/2027-W09`, `*/month/2027-03`.
    package var key: String { "\(id.kind ?? "*")/\(id.period.rawValue)/\(periodLabel)" }

    /// `2027-03-01`, `2027-W09` (ISO week-year) or `2027-03`.
    package var periodLabel: String {
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        switch id.period {
        case .day:
            let (y, m, d) = Instant.civil(fromDays: id.periodIndex)
            return "\(y)-\(two(m))-\(two(d))"
        case .week:
            // The ISO week-year is the year of the week's Thursday.
            let monday = id.periodIndex * 7 - 3
            let thursday = monday + 3
            let (y, _, _) = Instant.civil(fromDays: thursday)
            let jan1 = Instant.daysFromCivil(year: y, month: 1, day: 1)
            let week = (thursday - jan1) / 7 + 1
            return "\(y)-W\(two(week))"
        case .month:
            let y = Instant.floorDiv(id.periodIndex, 12)
            return "\(y)-\(two(id.periodIndex - y * 12 + 1))"
        }
    }

    /// e.g. `bike_ride per day 2027-03-01: max 100 points`.
    package var description: String {
        var limits: [String] = []
        if let maxPoints { limits.append("max \(maxPoints) points") }
        if let maxEvents { limits.append("max \(maxEvents) events") }
        return "\(id.kind ?? "all kinds") per \(id.period.rawValue) \(periodLabel): " + limits.joined(separator: ", ")
    }
}

/// Points and events a citizen already consumed per cap window, loaded by the caller.
package struct CapUsage: Sendable, Equatable {
    package struct Counter: Sendable, Equatable {
        package var points: Int64
        package var events: Int64
        package init(points: Int64 = 0, events: Int64 = 0) {
            self.points = points
            self.events = events
        }
    }

    var counters: [CapWindow.ID: Counter]

    package init() { counters = [:] }

    package subscript(window: CapWindow) -> Counter {
        get { counters[window.id] ?? Counter() }
        set { counters[window.id] = newValue }
    }

    /// Adds an award's consumption (what the caller persists after accepting).
    package mutating func add(_ consumption: [CapConsumption]) {
        // Saturating: a counter at Int64.max still blocks every capped award, and callers
        // that persist counters check for overflow first (`BatchJudge`).
        for c in consumption {
            var counter = counters[c.window.id, default: Counter()]
            counter.points = Self.saturatingSum(counter.points, c.points)
            counter.events = Self.saturatingSum(counter.events, c.events)
            counters[c.window.id] = counter
        }
    }
}

extension CapUsage {
    static func saturatingSum(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}

/// What an award adds to one cap window's counters.
package struct CapConsumption: Sendable, Equatable {
    package let window: CapWindow
    package let points: Int64
    package let events: Int64
}

extension RuleSet {
    /// The windows of every cap that applies to this event (its kind's caps and the all-kinds caps),
    /// so the caller can load exactly those counters. Empty if the kind is not covered.
    package func capWindows(for event: ActionEvent) -> [CapWindow] {
        guard let rule = rule(kind: event.kind), !rule.caps.isEmpty else { return [] }
        return rule.windows(day: rule.localDay(atMs: Instant.milliseconds(event.occurredAt)))
    }
}
