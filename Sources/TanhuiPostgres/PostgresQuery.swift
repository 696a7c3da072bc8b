import CLibPQ
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

    private init(sql: String) { self.sql = sql }

    /// Two fragments in a row: literals joined are still literals.
    package static func + (lhs: SQLFragment, rhs: SQLFragment) -> SQLFragment {
        SQLFragment(sql: lhs.sql + rhs.sql)
    }
}

/// A PGresult owned by the rows read from it: their cells are read in place, with no copy
/// per value (the audit streams millions of cells), and the result is freed with the last row.
/// libpq documents a PGresult as read-only after creation, safe to share between threads.
final class ResultCells: @unchecked Sendable {
    let result: OpaquePointer

    init(_ result: OpaquePointer) { self.result = result }

    deinit { PQclear(result) }

    func isNull(_ row: Int32, _ column: Int32) -> Bool { PQgetisnull(result, row, column) == 1 }

    /// The cell's bytes (text format: no terminating NUL), valid while `self` lives.
    func bytes(_ row: Int32, _ column: Int32) -> UnsafeBufferPointer<UInt8> {
        let length = Int(PQgetlength(result, row, column))
        let start = UnsafeRawPointer(PQgetvalue(result, row, column)!).assumingMemoryBound(to: UInt8.self)
        return UnsafeBufferPointer(start: start, count: length)
    }
}

/// A row of a text-format result.
package struct PostgresRow: Sendable {
    let cells: ResultCells
    let row: Int32
    let columns: ColumnIndex

    package var count: Int { columns.names.count }

    /// A cell's bytes, nil for NULL or a column out of range; valid only while `cells` lives.
    private func bytes(_ column: Int) -> UnsafeBufferPointer<UInt8>? {
        guard column >= 0, column < count, !cells.isNull(row, Int32(column)) else { return nil }
        return cells.bytes(row, Int32(column))
    }

    /// The raw text of a column, nil for NULL.
    package func text(_ column: Int) -> String? {
        withBytes(column) { $0.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// Calls `body` with the cell's UTF-8 bytes (nil for NULL) without making a String: the
    /// audit hashes canonical forms straight from the result. The buffer must not escape.
    package func withBytes<Result>(_ column: Int, _ body: (UnsafeBufferPointer<UInt8>?) throws -> Result) rethrows -> Result {
        try withExtendedLifetime(cells) { try body(bytes(column)) }
    }

    /// `withBytes` for each column in `columns`, keeping the result alive once for all of them
    /// (the audit encodes every field of every sealed record this way).
    package func forEachCell(in columns: Range<Int>, _ body: (UnsafeBufferPointer<UInt8>?) -> Void) {
        withExtendedLifetime(cells) {
            for column in columns { body(bytes(column)) }
        }
    }

    package func decode<Value: PostgresDecodable>(_ column: Int, as type: Value.Type = Value.self) throws(PostgresError) -> Value {
        guard column >= 0, column < count else {
            throw .invalidValue("column \(column) out of range (\(count) columns)")
        }
        guard !cells.isNull(row, Int32(column)) else {
            throw .invalidValue("column \(columns.names[column]) is NULL")
        }
        return try withExtendedLifetime(cells) { () throws(PostgresError) -> Value in
            try Value(postgresBytes: cells.bytes(row, Int32(column)))
        }
    }

    package func decode<Value: PostgresDecodable>(_ column: Int, as type: Value?.Type) throws(PostgresError) -> Value? {
        guard column >= 0, column < count else {
            throw .invalidValue("column \(column) out of range (\(count) columns)")
        }
        guard !cells.isNull(row, Int32(column)) else { return nil }
        return try withExtendedLifetime(cells) { () throws(PostgresError) -> Value in
            try Value(postgresBytes: cells.bytes(row, Int32(column)))
        }
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
