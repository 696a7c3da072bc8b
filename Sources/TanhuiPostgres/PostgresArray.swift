package import Foundation

/// A one-dimensional array parameter in PostgreSQL's text form (`{"a","b",NULL}`), so a
/// batch of rows can travel as a few array parameters and be expanded with `unnest`:
/// `INSERT … SELECT * FROM unnest(\(ids)::uuid[], \(names)::text[])` — one statement, one plan.
package struct PostgresArray: PostgresEncodable {
    /// The whole literal, built once (a statement's text is formatted once per execution).
    package let postgresText: String?

    package init<Element: PostgresEncodable>(_ values: [Element]) {
        postgresText = Self.literal(values)
    }

    package init<Element: PostgresEncodable>(_ values: [Element?]) {
        postgresText = Self.literal(values)
    }

    // The element types of the write path, each compiled here with the literal specialized for
    // it (overload resolution prefers these to the generic inits). Called generically from
    // another module the literal was a fifth of the server's CPU in a partner upload: metadata
    // lookups, retain/release and the enumerated iterator per element (perf).
    package init(_ values: [String]) { postgresText = Self.literal(values) }
    package init(_ values: [String?]) { postgresText = Self.literal(values) }
    package init(_ values: [UUID]) { postgresText = Self.literal(values) }
    package init(_ values: [UUID?]) { postgresText = Self.literal(values) }
    package init(_ values: [Int64]) { postgresText = Self.literal(values) }
    package init(_ values: [Int64?]) { postgresText = Self.literal(values) }
    package init(_ values: [Int]) { postgresText = Self.literal(values) }
    package init(_ values: [Int?]) { postgresText = Self.literal(values) }
    package init(_ values: [Bool]) { postgresText = Self.literal(values) }
    package init(_ values: [UTCMilliseconds]) { postgresText = Self.literal(values) }
    package init(_ values: [UTCMilliseconds?]) { postgresText = Self.literal(values) }

    /// Every element quoted, quotes and backslashes escaped; built as UTF-8 bytes, each
    /// element written in place (`appendPostgresText`) rather than through a String, and
    /// scanned for characters to escape only when its type can hold them.
    static func literal<Element: PostgresEncodable>(_ values: [Element]) -> String {
        let scan = Element.postgresTextMayNeedEscaping
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(2 + values.count * 40)
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(UInt8(ascii: "\""))
            let start = bytes.count
            guard value.appendPostgresText(to: &bytes) else {
                bytes[start - 1] = UInt8(ascii: "N")
                bytes.append(contentsOf: "ULL".utf8)
                continue
            }
            if scan, let first = Self.firstToEscape(in: bytes, from: start) {
                let element = Array(bytes[first...])
                bytes.removeSubrange(first...)
                for byte in element {
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                    bytes.append(byte)
                }
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }

    static func firstToEscape(in bytes: [UInt8], from start: Int) -> Int? {
        bytes.withUnsafeBufferPointer { buffer in
            var index = start
            while index < buffer.count {
                if buffer[index] == UInt8(ascii: "\"") || buffer[index] == UInt8(ascii: "\\") { return index }
                index += 1
            }
            return nil
        }
    }
}
