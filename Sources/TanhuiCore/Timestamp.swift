import Foundation

/// RFC 3339 instants as Tanhui accepts them everywhere (documents, events, `sent_at`,
/// command-line options): a UTC offset is required, precision is milliseconds.
public enum Timestamp {
    public static func parse(_ text: String) -> Date? {
        guard case .success(let milliseconds) = Instant.parseRFC3339(text) else { return nil }
        return Instant.date(milliseconds)
    }
}

extension Timestamp {
    /// Epoch milliseconds of RFC 3339 text, or nil when it is not one.
    public static func milliseconds(_ text: String) -> Int64? {
        guard case .success(let milliseconds) = Instant.parseRFC3339(text) else { return nil }
        return milliseconds
    }

    /// Epoch milliseconds of a `Date`, rounded once at the boundary.
    public static func milliseconds(of date: Date) -> Int64 { Instant.milliseconds(date) }

    public static func date(milliseconds: Int64) -> Date { Instant.date(milliseconds) }

    /// RFC 3339 text in UTC, for messages.
    public static func format(milliseconds: Int64) -> String { Instant.format(milliseconds, offsetSeconds: 0) }
}
