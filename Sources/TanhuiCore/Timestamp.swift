import Foundation

/// RFC 3339 instants as Tanhui accepts them everywhere (documents, events, `sent_at`,
/// command-line options): a UTC offset is required, precision is milliseconds.
public enum Timestamp {
    public static func parse(_ text: String) -> Date? {
        guard case .success(let milliseconds) = Instant.parseRFC3339(text) else { return nil }
        return Instant.date(milliseconds)
    }
}
