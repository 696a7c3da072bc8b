/// A one-dimensional array parameter in PostgreSQL's text form (`{"a","b",NULL}`), so a
/// batch of rows can travel as a few array parameters and be expanded with `unnest`:
/// `INSERT … SELECT * FROM unnest(\(ids)::uuid[], \(names)::text[])` — one statement, one plan.
public struct PostgresArray: PostgresEncodable {
    public let elements: [String?]

    public init<Element: PostgresEncodable>(_ values: [Element]) {
        elements = values.map(\.postgresText)
    }

    public init<Element: PostgresEncodable>(_ values: [Element?]) {
        elements = values.map { $0?.postgresText }
    }

    public var postgresText: String? {
        var text = "{"
        for (index, element) in elements.enumerated() {
            if index > 0 { text += "," }
            guard let element else {
                text += "NULL"
                continue
            }
            text += "\""
            for character in element.unicodeScalars {
                if character == "\"" || character == "\\" { text += "\\" }
                text.unicodeScalars.append(character)
            }
            text += "\""
        }
        return text + "}"
    }
}
