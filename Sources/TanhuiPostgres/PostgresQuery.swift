/// A parameterised statement.
///
/// Built with string interpolation, every interpolated value becomes a `$n` parameter, so
/// there is no way to splice a value into SQL text by accident:
/// `"SELECT * FROM rule_sets WHERE province = \(province)"`.
/// Identifiers (database names in tests and tooling) go through `\(identifier:)`, which quotes them.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    public private(set) var sql: String
    public private(set) var parameters: [String?]

    public init(stringLiteral value: String) {
        sql = value
        parameters = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        parameters = stringInterpolation.parameters
    }

    /// A statement with positional parameters, for SQL assembled from trusted fragments.
    public init(sql: StaticString, parameters: [String?]) {
        self.sql = sql.description
        self.parameters = parameters
    }

    /// The same statement under `EXPLAIN` (planned, not executed), for plan checks.
    public func explained() -> PostgresQuery {
        var copy = self
        copy.sql = "EXPLAIN " + sql
        return copy
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            parameters.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            sql += "$\(parameters.count)"
        }

        /// An optional value: nil binds SQL NULL.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            parameters.append(value?.postgresText)
            sql += "$\(parameters.count)"
        }

        /// A constant SQL fragment (a shared column list): compile-time text, never a value.
        public mutating func appendInterpolation(_ fragment: SQLFragment) {
            sql += fragment.sql
        }

        /// A quoted identifier: `"name"`, with embedded quotes doubled.
        public mutating func appendInterpolation(identifier: String) {
            sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }
}

/// SQL text that can only come from a string literal in the source, so it can be spliced
/// into a statement without becoming a way to splice values.
public struct SQLFragment: Sendable, ExpressibleByStringLiteral {
    let sql: String

    public init(stringLiteral value: StaticString) {
        sql = value.description
    }
}

/// A row of a text-format result.
public struct PostgresRow: Sendable {
    let values: [String?]
    let columns: ColumnIndex

    /// The raw text of a column, nil for NULL.
    public func text(_ column: Int) -> String? { values[column] }

    public func decode<Value: PostgresDecodable>(_ column: Int, as type: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard column < values.count else {
            throw .invalidValue("column \(column) out of range (\(values.count) columns)")
        }
        guard let text = values[column] else {
            throw .invalidValue("column \(columns.names[column]) is NULL")
        }
        return try Value(postgresText: text)
    }

    public func decode<Value: PostgresDecodable>(_ column: Int, as type: Value?.Type) throws(PostgresError) -> Value? {
        guard column < values.count else {
            throw .invalidValue("column \(column) out of range (\(values.count) columns)")
        }
        guard let text = values[column] else { return nil }
        return try Value(postgresText: text)
    }

    public func decode<Value: PostgresDecodable>(_ name: String, as type: Value.Type = Value.self) throws(PostgresError) -> Value {
        try decode(try columns.index(of: name), as: type)
    }

    public func decode<Value: PostgresDecodable>(_ name: String, as type: Value?.Type) throws(PostgresError) -> Value? {
        try decode(try columns.index(of: name), as: type)
    }
}

final class ColumnIndex: Sendable {
    let names: [String]
    let positions: [String: Int]

    init(names: [String]) {
        self.names = names
        var positions: [String: Int] = [:]
        for (index, name) in names.enumerated() where positions[name] == nil {
            positions[name] = index
        }
        self.positions = positions
    }

    func index(of name: String) throws(PostgresError) -> Int {
        guard let index = positions[name] else { throw .invalidValue("no column named \(name)") }
        return index
    }
}

/// The materialised result of one statement.
public struct PostgresResult: Sendable {
    public let columnNames: [String]
    public let rows: [PostgresRow]
    /// Rows inserted, updated, deleted or copied, as reported by the server.
    public let affectedRows: Int

    public var first: PostgresRow? { rows.first }

    /// The first column of the first row, for one-value queries.
    public func scalar<Value: PostgresDecodable>(_ type: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard let row = rows.first else { throw .invalidValue("query returned no rows") }
        return try row.decode(0, as: type)
    }
}
