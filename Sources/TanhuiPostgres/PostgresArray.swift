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

    /// Every element quoted, quotes and backslashes escaped; built as UTF-8 bytes, each
    /// element written in place (`appendPostgresText`) rather than through a String.
    static func literal(_ values: [some PostgresEncodable]) -> String {
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
            if bytes[start...].contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                let element = Array(bytes[start...])
                bytes.removeSubrange(start...)
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
}
