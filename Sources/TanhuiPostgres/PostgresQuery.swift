import Foundation

/// A parameterised statement.
///
/// Built with string interpolation, every interpolated value becomes a `$n` parameter, so
/// there is no way to splice a value into SQL text by accident:
/// `"SELECT * FROM rule_sets WHERE province = \(province)"`.
/// Identifiers (database names in tests and tooling) go through `\(identifier:)`, which quotes them.
package struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    package private(set) var sql: String
    package private(set) var parameters: [String?]

    package init(stringLiteral value: String) {
        sql = value
        parameters = []
    }

    package init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        parameters = stringInterpolation.parameters
    }

    /// A statement with positional parameters, for SQL assembled from trusted fragments.
    package init(sql: StaticString, parameters: [String?]) {
        self.sql = sql.description
        self.parameters = parameters
    }

    /// The same statement under `EXPLAIN` (planned, not executed), for plan checks.
    package func explained() -> PostgresQuery {
        var copy = self
        copy.sql = "EXPLAIN " + sql
        return copy
    }

    package struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var parameters: [String?] = []

        package init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            parameters.reserveCapacity(interpolationCount)
        }

        package mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        package mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            sql += "$\(parameters.count)"
        }

        /// An optional value: nil binds SQL NULL.
        package mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            parameters.append(value?.postgresText)
            sql += "$\(parameters.count)"
        }

        /// A constant SQL fragment (a shared column list): compile-time text, never a value.
        package mutating func appendInterpolation(_ fragment: SQLFragment) {
            sql += fragment.sql
        }

        /// A quoted identifier: `"name"`, with embedded quotes doubled.
        package mutating func appendInterpolation(identifier: String) {
            sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }
}

/// SQL text that can only come from a string literal in the source, so it can be spliced
/// into a statement without becoming a way to splice values.
package struct SQLFragment: Sendable, ExpressibleByStringLiteral {
    let sql: String

    package init(stringLiteral value: StaticString) {
        sql = value.description
    }
}

/// A row of a text-format result.
package struct PostgresRow: Sendable {
    let values: [String?]
    let columns: ColumnIndex

    /// The raw text of a column, nil for NULL.
    package func text(_ column: Int) -> String? { values[column] }

    package func decode<Value: PostgresDecodable>(_ column: Int, as type: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard column < values.count else {
            throw .invalidValue("column \(column) out of range (\(values.count) columns)")
        }
        guard let text = values[column] else {
            throw .invalidValue("column \(columns.names[column]) is NULL")
        }
        return try Value(postgresText: text)
    }

    package func decode<Value: PostgresDecodable>(_ column: Int, as type: Value?.Type) throws(PostgresError) -> Value? {
        guard column < values.count else {
            throw .invalidValue("column \(column) out of range (\(values.count) columns)")
        }
        guard let text = values[column] else { return nil }
        return try Value(postgresText: text)
    }

    package func decode<Value: PostgresDecodable>(_ name: String, as type: Value.Type = Value.self) throws(PostgresError) -> Value {
        try decode(try columns.index(of: name), as: type)
    }

    package func decode<Value: PostgresDecodable>(_ name: String, as type: Value?.Type) throws(PostgresError) -> Value? {
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
package struct PostgresResult: Sendable {
    package let columnNames: [String]
    package let rows: [PostgresRow]
    /// Rows inserted, updated, deleted or copied, as reported by the server.
    package let affectedRows: Int

    package var first: PostgresRow? { rows.first }

    /// The first column of the first row, for one-value queries.
    package func scalar<Value: PostgresDecodable>(_ type: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard let row = rows.first else { throw .invalidValue("query returned no rows") }
        return try row.decode(0, as: type)
    }
}
