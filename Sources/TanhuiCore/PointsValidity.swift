package import Foundation

/// How long the points of one award (a lot) stay spendable, from a rule set's
/// `points_validity`. The version in force at the event's `occurred_at` fixes the lot's
/// expiry instant when the award is made; a later version never revalues it.
///
/// Both rules count in the province's local calendar (the rule set's `timezone`) and expire
/// at a local midnight, so a citizen sees whole days:
/// - `months(N)`: the lot lives through the local day N calendar months after the event's
///   local date (clamped to that month's last day: 31 Jan + 1 month → 28/29 Feb; 29 Feb + 12
///   months → 28 Feb) and expires at the following local midnight.
/// - `endOfYearAfter(N)`: the lot expires at local midnight starting 1 January of the year
///   N + 1 after the event's local year (N = 0: at the end of the year it was earned).
package enum PointsValidity: Sendable, Hashable {
    case months(Int)
    case endOfYearAfter(Int)

    /// Longest validity (Shenzhen's rules: at most 10 years).
    package static let maximumMonths = 120
    package static let maximumYears = 10

    /// The document spelling, for `rules diff` and error messages.
    package var description: String {
        switch self {
        case .months(let n): return "{months: \(n)}"
        case .endOfYearAfter(let n): return "{end_of_year_after: \(n)}"
        }
    }

    /// The local day (days since 1970-01-01 in the zone's calendar) on whose first instant the
    /// lot expires, for an event on local day `localDay`.
    package func expiryLocalDay(eventLocalDay localDay: Int64) -> Int64 {
        let (year, month, day) = Instant.civil(fromDays: localDay)
        switch self {
        case .months(let n):
            let index = year * 12 + (month - 1) + Int64(n)
            let targetYear = Instant.floorDiv(index, 12)
            let targetMonth = index - targetYear * 12 + 1
            let targetDay = min(day, Instant.daysInMonth(targetYear, targetMonth))
            return Instant.daysFromCivil(year: targetYear, month: targetMonth, day: targetDay) + 1
        case .endOfYearAfter(let n):
            return Instant.daysFromCivil(year: year + Int64(n) + 1, month: 1, day: 1)
        }
    }

    /// The lot's expiry instant (integer milliseconds since 1970, UTC) for an event at
    /// `occurredMs`, in `timeZone`.
    package func expiresAtMs(occurredMs: Int64, timeZone: TimeZone) -> Int64 {
        let offset = Int64(timeZone.secondsFromGMT(for: Instant.date(occurredMs))) * 1000
        let localDay = Instant.floorDiv(occurredMs + offset, Instant.msPerDay)
        return Self.localMidnightMs(day: expiryLocalDay(eventLocalDay: localDay), timeZone: timeZone)
    }

    /// The UTC instant of local midnight starting `day` in `timeZone` (the offset in force at
    /// that midnight; province zones have had fixed offsets for decades).
    static func localMidnightMs(day: Int64, timeZone: TimeZone) -> Int64 {
        let wall = day * Instant.msPerDay
        let guess = wall - Int64(timeZone.secondsFromGMT(for: Instant.date(wall))) * 1000
        return wall - Int64(timeZone.secondsFromGMT(for: Instant.date(guess))) * 1000
    }
}

/// Oldest-expiry-first spending over a citizen's lots, and refunds back into the lots a spend
/// drew from. Pure: the service loads the lots under the citizen's account lock and records
/// what this returns.
package enum LotDraw {
    /// One lot as a spend sees it.
    package struct Lot: Sendable, Equatable {
        /// The award transaction that made the lot (its identity).
        package var awardTransactionID: Int64
        package var expiresAtMs: Int64
        /// Points still in the lot (never negative).
        package var remaining: Int64

        package init(awardTransactionID: Int64, expiresAtMs: Int64, remaining: Int64) {
            self.awardTransactionID = awardTransactionID
            self.expiresAtMs = expiresAtMs
            self.remaining = remaining
        }
    }

    /// Takes up to `points` from `lots`, oldest expiry first (ties: the older award first);
    /// returns `(awardTransactionID, points taken)` in draw order. Points beyond the lots'
    /// total come from the citizen's points that never expire and are not lots.
    package static func draw(_ points: Int64, from lots: [Lot]) -> [(awardTransactionID: Int64, points: Int64)] {
        var left = points
        var taken: [(awardTransactionID: Int64, points: Int64)] = []
        let ordered = lots.filter { $0.remaining > 0 }.sorted { ($0.expiresAtMs, $0.awardTransactionID) < ($1.expiresAtMs, $1.awardTransactionID) }
        for lot in ordered where left > 0 {
            let take = min(left, lot.remaining)
            taken.append((lot.awardTransactionID, take))
            left -= take
        }
        return taken
    }

    /// Where a refund of `points` goes back, given what the capture can still refund
    /// (`refundable`) and the lots it drew from net of earlier refunds (`drawn`, in draw order).
    /// The capture's points that were not lots (non-expiring) return first, then the lots,
    /// the last-drawn (latest-expiring) first: the citizen gets back the longest-lived points.
    /// Returns `(lot, points)` for the lots only.
    package static func refund(
        _ points: Int64, refundable: Int64, into drawn: [(awardTransactionID: Int64, points: Int64)]
    ) -> [(
        awardTransactionID: Int64, points: Int64
    )] {
        let inLots = drawn.reduce(Int64(0)) { $0 + $1.points }
        var left = points - min(points, max(0, refundable - inLots))
        var back: [(awardTransactionID: Int64, points: Int64)] = []
        for lot in drawn.reversed() where left > 0 && lot.points > 0 {
            let give = min(left, lot.points)
            back.append((lot.awardTransactionID, give))
            left -= give
        }
        return back
    }
}
