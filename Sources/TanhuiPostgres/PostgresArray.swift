/// A one-dimensional array parameter in PostgreSQL's text form (`{"a","b",NULL}`), so a
/// batch of rows can travel as a few array parameters and be expanded with `unnest`:
/// `INSERT … SELECT * FROM unnest(\(ids)::uuid[], \(names)::text[])` — one statement, one plan.
package struct PostgresArray: PostgresEncodable {
    package let elements: [String?]

    package init<Element: PostgresEncodable>(_ values: [Element]) {
        elements = values.map(\.postgresText)
    }

    package init<Element: PostgresEncodable>(_ values: [Element?]) {
        elements = values.map { $0?.postgresText }
    }

    /// Built as UTF-8 bytes (quotes and backslashes escaped), not by appending characters:
    /// batch statements carry thousands of elements.
    package var postgresText: String? {
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(2 + elements.reduce(0) { $0 + ($1?.utf8.count ?? 4) + 3 })
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            guard let element else {
                bytes.append(contentsOf: "NULL".utf8)
                continue
            }
            bytes.append(UInt8(ascii: "\""))
            for byte in element.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}
