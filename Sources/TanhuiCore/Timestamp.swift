package import Foundation

/// RFC 3339 instants as Tanhui accepts them everywhere (documents, events, `sent_at`,
/// command-line options): a UTC offset is required, precision is milliseconds.
package enum Timestamp {
    package static func parse(_ text: String) -> Date? {
        guard case .success(let milliseconds) = Instant.parseRFC3339(text) else { return nil }
        return Instant.date(milliseconds)
    }
}

extension Timestamp {
    /// Epoch milliseconds of RFC 3339 text, or nil when it is not one.
    package static func milliseconds(_ text: String) -> Int64? {
        guard case .success(let milliseconds) = Instant.parseRFC3339(text) else { return nil }
        return milliseconds
    }

    /// Epoch milliseconds of a `Date`, rounded once at the boundary.
    package static func milliseconds(of date: Date) -> Int64 { Instant.milliseconds(date) }

    /// RFC 3339 text in UTC with milliseconds (`2027-03-01T00:00:00.123Z`), built from the
    /// integer alone: how instants travel to PostgreSQL, which parses it into integer
    /// microseconds, so no floating point sits between the judge and the table.
    package static func textUTC(milliseconds: Int64) -> String {
        let seconds = Instant.format(Instant.floorDiv(milliseconds, 1000) * 1000, offsetSeconds: 0)
        let fraction = milliseconds - Instant.floorDiv(milliseconds, 1000) * 1000
        let digits = fraction < 10 ? "00\(fraction)" : fraction < 100 ? "0\(fraction)" : "\(fraction)"
        return seconds.dropLast() + "." + digits + "Z"
    }
}
